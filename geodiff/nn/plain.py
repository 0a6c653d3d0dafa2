"""A plain trajectory backbone: attention on raw coordinates, with no geometric constraint.

The control for geodiff's equivariant networks (issue: symmetry as a measured choice). It has the
interface, the width and the depth class of the EGTN (:class:`geodiff.nn.egtn.EGTNBlock`), and is
permutation-equivariant (it works on graphs) but neither rotation- nor translation-equivariant: positions
enter as features. Wrap it in :func:`geodiff.nn.frame_averaging.frame_average` to make it exactly
E(d)-equivariant, or train it with augmentation or a soft-equivariance penalty.

Per block, on features ``z`` ``[nodes, frames, H]``:

* graph attention within every frame over the edges (``a_ij = softmax_j(q_i . k_j / sqrt(d) + b(e_ij))``,
  ``z_i += W_o sum_j a_ij v_j``), then
* temporal attention over every node's frames (the EGTN's :class:`~geodiff.nn.egtn.TemporalAttention`
  with its coordinate update switched off), then a feed-forward layer.

Positions: ``z_0 = W [h, x]``, and ``x_out = x + W_x LayerNorm(z_L)`` (``W_x`` starts at zero, so an
untrained network returns its input, as the EGTN does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodiff.nn.egtn import TemporalAttention
from geodiff.nn.scatter import gather, scatter_softmax, scatter_sum

__all__ = ["GraphAttention", "PlainTrajectoryNet"]


class GraphAttention(nn.Module):
    """Multi-head attention of every node over its incoming edges, in every frame at once.

    ``forward(z [N, F, H], edge_index [2, E], edge_attr [E, F_e]) -> z [N, F, H]`` (residual included).
    """

    def __init__(self, hidden: int, edge_dim: int = 0, heads: int = 4):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, hidden // heads
        self.norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.edge_bias = nn.Linear(edge_dim, heads, bias=False) if edge_dim else None
        self.out = nn.Linear(hidden, hidden)
        self.ff_norm = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, z, edge_index, edge_attr=None):
        n, f, hid = z.shape
        i, j = edge_index  # the message from j is aggregated on i
        q, k, v = self.qkv(self.norm(z)).view(n, f, 3, self.heads, self.head_dim).unbind(2)
        logits = (gather(q, i) * gather(k, j)).sum(-1) / math.sqrt(self.head_dim)  # [E, F, heads]
        if self.edge_bias is not None and edge_attr is not None and edge_attr.shape[-1]:
            logits = logits + self.edge_bias(edge_attr).unsqueeze(1)
        a = scatter_softmax(logits, i, n)
        msg = scatter_sum(a.unsqueeze(-1) * gather(v, j), i, n).reshape(n, f, hid)
        z = z + self.out(msg)
        return z + self.ff(self.ff_norm(z))


class PlainTrajectoryNet(nn.Module):
    """Drop-in for the EGTN stack: ``forward(h [N, F, in_dim], x [N, F, d], edge_index, edge_attr) ->
    (z [N, F, hidden], x_out [N, F, d])``; not equivariant (see the module docstring)."""

    def __init__(self, in_dim: int, hidden: int, edge_dim: int, layers: int, heads: int, dim: int,
                 features_out: bool = True):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(in_dim + dim, hidden)
        self.spatial = nn.ModuleList(GraphAttention(hidden, edge_dim, heads) for _ in range(layers))
        self.temporal = nn.ModuleList(TemporalAttention(hidden, heads, update_x=False) for _ in range(layers))
        self.head_norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h, x, edge_index, edge_attr):
        z = self.embed(torch.cat([h, x], dim=-1))
        for spatial, temporal in zip(self.spatial, self.temporal, strict=True):
            z = spatial(z, edge_index, edge_attr)
            z, _ = temporal(z, x)
        return z, x + self.head(self.head_norm(z))
