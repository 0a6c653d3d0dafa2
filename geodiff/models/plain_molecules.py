"""A plain molecule denoiser: graph attention on raw coordinates, with no geometric constraint.

The molecule-family control of the symmetry tools (docs/symmetry.md), with the interface of
:class:`~geodiff.models.eqgat_diff.EQGATDiffDenoiser` (``model=molecule_plain``): it reads atom types,
charges, bonds, the diffusion time and the coordinates *as features*, so it is permutation-equivariant (a
graph network) but neither rotation- nor translation-equivariant. ``frame_averaging="E"`` (or ``"SE"``)
averages it over the PCA frames of each molecule (:mod:`geodiff.nn.frame_averaging`), which makes it
exactly equivariant.

Per layer, on node features ``z`` ``[N, H]`` and edge features ``e`` ``[E, F]`` of the fully connected
molecule: multi-head attention over the edges with an edge bias (:class:`geodiff.nn.plain.GraphAttention`),
then ``e += MLP([e, z_i + z_j])``. Heads: atom and charge logits from ``z``; positions
``x0 = x + W_x LayerNorm(z)`` (``W_x`` starts at zero), centred per molecule as the scheduler needs; bond
logits from ``[e_ij + e_ji, z_i + z_j]``, symmetric by construction.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from geodiff.errors import GeodiffValueError, check_positive_ints
from geodiff.manifolds import euclidean
from geodiff.models.base import StrictLoadMixin
from geodiff.models.eqgat_diff import molecule_inputs, reverse_edge_permutation
from geodiff.nn.frame_averaging import frame_average
from geodiff.nn.plain import GraphAttention
from geodiff.nn.scatter import gather

__all__ = ["PlainMoleculeDenoiser"]


class PlainMoleculeDenoiser(StrictLoadMixin, ModelMixin, ConfigMixin):
    """Non-equivariant molecule denoiser (module docstring); save/load like the EQGAT denoisers.

    Args:
        num_atom_types, num_charge_classes, num_bond_types: vocabulary sizes (QM9: 5, 6, 5).
        hidden, edge_dim, num_layers, heads: widths, depth and attention heads.
        frame_averaging: ``none``, ``E`` or ``SE``.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_atom_types: int = 5, num_charge_classes: int = 6, num_bond_types: int = 5,
                 hidden: int = 128, edge_dim: int = 32, num_layers: int = 6, heads: int = 4,
                 frame_averaging: Literal["none", "E", "SE"] = "none"):  # fmt: skip
        super().__init__()
        check_positive_ints("model", num_atom_types=num_atom_types, num_charge_classes=num_charge_classes,
                            num_bond_types=num_bond_types, hidden=hidden, edge_dim=edge_dim,
                            num_layers=num_layers, heads=heads)  # fmt: skip
        if frame_averaging not in ("none", "E", "SE"):
            raise GeodiffValueError(f"frame_averaging: expected none, E or SE, got {frame_averaging!r}")
        self.node_embed = nn.Linear(num_atom_types + num_charge_classes + 3 + 1, hidden)
        self.edge_embed = nn.Linear(num_bond_types + 1, edge_dim)
        self.attn = nn.ModuleList(GraphAttention(hidden, edge_dim, heads) for _ in range(num_layers))
        self.edge_mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(edge_dim + hidden, edge_dim), nn.SiLU(), nn.Linear(edge_dim, edge_dim))
            for _ in range(num_layers)
        )
        self.node_head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, num_atom_types + num_charge_classes))  # fmt: skip
        self.pos_norm = nn.LayerNorm(hidden)
        self.pos_head = nn.Linear(hidden, 3)
        nn.init.zeros_(self.pos_head.weight)
        nn.init.zeros_(self.pos_head.bias)
        self.bond_head = nn.Sequential(nn.Linear(edge_dim + hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, num_bond_types))  # fmt: skip

    def _net(self, pos, atom_types, charges, bonds, t, batch, edge_index):
        """``(x0 [N, 3] uncentred, node logits [N, A + C], bond logits [E, B])`` from raw coordinates."""
        j, i = edge_index
        z = self.node_embed(torch.cat([atom_types, charges, pos, gather(t, batch)], -1)).unsqueeze(1)
        e = self.edge_embed(torch.cat([bonds, gather(t, batch[i])], -1))
        rev = reverse_edge_permutation(edge_index, pos.shape[0])
        for attn, edge_mlp in zip(self.attn, self.edge_mlp, strict=True):
            z = attn(z, edge_index, e)
            pair = gather(z[:, 0], i) + gather(z[:, 0], j)
            e = e + edge_mlp(torch.cat([e, pair], -1))
        z = z[:, 0]
        x0 = pos + self.pos_head(self.pos_norm(z))
        logits = self.bond_head(torch.cat([e + gather(e, rev), gather(z, i) + gather(z, j)], -1))
        return x0, self.node_head(z), logits

    def forward(self, pos: torch.Tensor, atom_types: torch.Tensor, charges: torch.Tensor, bonds: torch.Tensor,
                t: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                self_cond: dict | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """The EQGAT denoiser's interface: noisy ``pos`` ``[N, 3]``, one-hot (or noisy) ``atom_types``,
        ``charges`` ``[N, K]``, ``bonds`` ``[E, B]`` on the directed ``edge_index`` ``[2, E]``, time ``t`` in
        (0, 1] per molecule; returns ``{"pos" (zero-CoM x0), "atoms", "charges", "bonds"}``."""
        c = self.config
        if self_cond is not None:
            raise GeodiffValueError("self_cond: the plain molecule denoiser has no self-conditioning")
        num_graphs, t = molecule_inputs(c, pos, atom_types, charges, bonds, t, batch, edge_index)
        args = (atom_types, charges, bonds, t, batch, edge_index)
        if c.frame_averaging == "none":
            x0, node, logits = self._net(pos, *args)
        else:
            x0, node, logits = frame_average(lambda p: self._net(p, *args), pos, batch,
                                             ("position", "scalar", "scalar"), group=c.frame_averaging,
                                             num_graphs=num_graphs,
                                             output_systems={2: batch[edge_index[0]]})  # fmt: skip
        return {"pos": euclidean.remove_mean(x0, batch, num_graphs), "atoms": node[:, : c.num_atom_types],
                "charges": node[:, c.num_atom_types :], "bonds": logits}  # fmt: skip
