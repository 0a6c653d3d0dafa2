"""The EQGAT-diff denoiser as its reference code builds it (tuanle618/eqgat-diff,
``e3moldiffusion/coordsatomsbonds.py`` ``DenoisingEdgeNetwork`` with ``PredictionHeadEdge``, ``gnn.py``
``EQGATEdgeGNN``), for comparing geodiff's design choices with the published ones (``docs/fidelity.md``).

Same interface as :class:`~geodiff.models.eqgat_diff.EQGATDiffDenoiser` (noisy positions, one-hot atom
types, charges and bond types, ``t / T``; returns ``pos`` / ``atoms`` / ``charges`` / ``bonds``), so the same
schedulers, loss, training module and pipeline run it. Where it differs from geodiff's model:

* embeddings: ``s = W_at (W_a [atoms, charges] + W_ta t)``, ``e = W_bt (W_b bonds + W_tb t)``;
* layers: :class:`~geodiff.nn.eqgat_reference.EQGATReferenceLayer` (|p| inputs, SE3Norm on the position
  update, edge pre/post maps, the reference's graph-wise normalisation; no RBF distance features);
* heads: ``x0 = p + W v`` (a linear map of the vector channels added to the final positions, centred);
  atoms and charges from ``silu(W s)``; bonds from ``silu(W s)_i + silu(W s)_j + W_e (e_ij + e_ji) / 2`` and
  the squared distance of the predicted positions, through a two-layer MLP.

Paper size: ``s_dim=256, v_dim=64, e_dim=32, num_layers=7`` (``configs/model/eqgat_diff_reference.yaml``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from geodiff.errors import GeodiffValueError, check_positive_ints
from geodiff.manifolds import euclidean
from geodiff.models.base import StrictLoadMixin
from geodiff.models.eqgat_diff import molecule_inputs, reverse_edge_permutation
from geodiff.nn.eqgat_reference import EQGATReferenceLayer, GraphLayerNorm, _linear, edge_attributes
from geodiff.nn.scatter import gather

__all__ = ["EQGATReferenceDenoiser"]


class EQGATReferenceDenoiser(StrictLoadMixin, ModelMixin, ConfigMixin):
    """The reference EQGAT-diff network (module docstring); ``save_pretrained`` / ``from_pretrained``.

    Args:
        num_atom_types, num_charge_classes, num_bond_types: vocabulary sizes (QM9: 5, 6, 5).
        s_dim, v_dim, e_dim: scalar, vector and edge channels (paper: 256, 64, 32).
        num_layers: EQGAT layers (paper: 7).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_atom_types: int = 5, num_charge_classes: int = 6, num_bond_types: int = 5,
                 s_dim: int = 256, v_dim: int = 64, e_dim: int = 32, num_layers: int = 7):  # fmt: skip
        super().__init__()
        check_positive_ints("model", num_atom_types=num_atom_types, num_charge_classes=num_charge_classes,
                            num_bond_types=num_bond_types, s_dim=s_dim, v_dim=v_dim, e_dim=e_dim,
                            num_layers=num_layers)  # fmt: skip
        self.time_atom = _linear(1, s_dim)
        self.time_bond = _linear(1, e_dim)
        self.atom_mapping = _linear(num_atom_types + num_charge_classes, s_dim)
        self.bond_mapping = _linear(num_bond_types, e_dim)
        self.atom_time_mapping = _linear(s_dim, s_dim)
        self.bond_time_mapping = _linear(e_dim, e_dim)
        self.norms = nn.ModuleList(GraphLayerNorm(s_dim) for _ in range(num_layers))
        self.layers = nn.ModuleList(
            EQGATReferenceLayer(s_dim, v_dim, e_dim, vector_input=k > 0, mlp_update=k < num_layers - 1)
            for k in range(num_layers)
        )
        self.shared_mapping = _linear(s_dim, s_dim)
        self.coords_lin = _linear(v_dim, 1, bias=False)
        self.atoms_lin = _linear(s_dim, num_atom_types + num_charge_classes)
        self.head_bond_mapping = _linear(e_dim, s_dim)
        self.bonds_lin_0 = _linear(s_dim + 1, s_dim)
        self.bonds_lin_1 = _linear(s_dim, num_bond_types)

    def forward(self, pos, atom_types, charges, bonds, t, batch, edge_index, self_cond=None):
        """Predictions of the clean molecule (see :meth:`EQGATDiffDenoiser.forward`); no self-conditioning
        (the reference has none)."""
        c = self.config
        n = pos.shape[0]
        if self_cond is not None:
            raise GeodiffValueError("self_cond: the reference EQGAT-diff network has no self-conditioning")
        num_graphs, t = molecule_inputs(c, pos, atom_types, charges, bonds, t, batch, edge_index)
        j, i = edge_index
        p = euclidean.remove_mean(pos, batch, num_graphs)
        s = self.atom_mapping(torch.cat([atom_types, charges], dim=-1)) + gather(self.time_atom(t), batch)
        s = self.atom_time_mapping(s)
        e = self.bond_time_mapping(self.bond_mapping(bonds) + gather(self.time_bond(t), gather(batch, i)))
        v = pos.new_zeros((n, 3, c.v_dim))
        attrs = edge_attributes(p, edge_index)
        for norm, layer in zip(self.norms, self.layers, strict=True):
            s, v = norm(s, v, batch, num_graphs)
            s, v, p, e = layer(s, v, p, e, edge_index, batch, num_graphs, attrs)
            attrs = edge_attributes(p, edge_index)
        s = F.silu(self.shared_mapping(s))
        x0 = euclidean.remove_mean(p + self.coords_lin(v).squeeze(-1), batch, num_graphs)
        node = self.atoms_lin(s)
        rev = reverse_edge_permutation(edge_index, n)
        e_sym = 0.5 * (e + gather(e, rev))
        d2 = (gather(x0, i) - gather(x0, j)).pow(2).sum(-1, keepdim=True)
        f = gather(s, i) + gather(s, j) + self.head_bond_mapping(e_sym)
        bond_logits = self.bonds_lin_1(F.silu(self.bonds_lin_0(torch.cat([f, d2], dim=-1))))
        return {"pos": x0, "atoms": node[:, : c.num_atom_types], "charges": node[:, c.num_atom_types :],
                "bonds": bond_logits}  # fmt: skip

    @staticmethod
    def self_cond_from(out):
        raise GeodiffValueError("self_cond: the reference EQGAT-diff network has no self-conditioning")
