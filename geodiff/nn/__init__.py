"""Equivariant building blocks (each tested for equivariance in float64) and scatter operations on plain
torch index ops (no compiled extensions).

* ``eqgat``: :class:`EQGATLayer` (scalar, vector and edge channels; position updates).
* ``eqgat_reference``: :class:`EQGATReferenceLayer`, the layer as EQGAT-diff's reference code computes it.
* ``egtn``: :class:`EGNNLayer`, :class:`TemporalAttention`, :class:`EGTNBlock` (GeoTDM).
* ``pointcloud``: kNN, PCA normals, invariant point-pair / e3nn encoders, attention, Sinkhorn, Procrustes.
* ``plain``: :class:`PlainTrajectoryNet`, attention on raw coordinates (not equivariant: the control).
* ``frame_averaging``: :class:`FrameAveraging`, :func:`frame_average`, :func:`pca_frames` (Puny et al. 2022):
  any backbone made exactly E(d)/SE(d)-equivariant.
* ``scatter``: ``scatter_sum``, ``scatter_mean``, ``scatter_softmax``, ``gather``.
"""

from geodiff.nn.egtn import EGNNLayer, EGTNBlock, TemporalAttention
from geodiff.nn.eqgat import EQGATLayer, GatedEquivariantBlock, GaussianRBF
from geodiff.nn.eqgat_reference import EQGATReferenceLayer
from geodiff.nn.frame_averaging import FrameAveraging, frame_average, pca_frames
from geodiff.nn.plain import PlainTrajectoryNet
from geodiff.nn.scatter import gather, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["EGNNLayer", "EGTNBlock", "EQGATLayer", "EQGATReferenceLayer", "FrameAveraging",
           "GatedEquivariantBlock", "GaussianRBF", "PlainTrajectoryNet", "TemporalAttention", "frame_average",
           "gather", "pca_frames", "scatter_mean", "scatter_softmax", "scatter_sum"]  # fmt: skip
