"""Equivariant building blocks (each tested for equivariance in float64) and scatter operations on plain
torch index ops (no compiled extensions).

* ``eqgat``: :class:`EQGATLayer` (scalar, vector and edge channels; position updates).
* ``eqgat_reference``: :class:`EQGATReferenceLayer`, the layer as EQGAT-diff's reference code computes it.
* ``egtn``: :class:`EGNNLayer`, :class:`TemporalAttention`, :class:`EGTNBlock` (GeoTDM).
* ``pointcloud``: kNN, PCA normals, invariant point-pair / e3nn encoders, attention, Sinkhorn, Procrustes.
* ``scatter``: ``scatter_sum``, ``scatter_mean``, ``scatter_softmax``, ``gather``.
"""

from geodiff.nn.egtn import EGNNLayer, EGTNBlock, TemporalAttention
from geodiff.nn.eqgat import EQGATLayer, GatedEquivariantBlock, GaussianRBF
from geodiff.nn.eqgat_reference import EQGATReferenceLayer
from geodiff.nn.scatter import gather, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["EGNNLayer", "EGTNBlock", "EQGATLayer", "EQGATReferenceLayer", "GatedEquivariantBlock",
           "GaussianRBF", "TemporalAttention", "gather", "scatter_mean", "scatter_softmax",
           "scatter_sum"]  # fmt: skip
