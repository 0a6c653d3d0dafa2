"""Equivariant layers for trajectories (GeoTDM, Han et al., NeurIPS 2024): the EGTN building blocks.

Positions are ``x`` ``[nodes, frames, dim]`` and invariant node features ``h`` ``[nodes, frames, H]``. Both
layers only use differences of positions and their norms, so they are E(dim)-equivariant in any dimension
(3 for particles and molecules, 2 for pedestrians) and translation-equivariant.

* :class:`EGNNLayer` (ES layer; Satorras et al. 2021) acts within every frame over the graph's edges:
  ``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, e_ij)``,
  ``x_i += mean_j (x_i - x_j) / (1 + |x_i - x_j|) phi_x(m_ij)``,
  ``h_i += phi_h(h_i, sum_j m_ij)``.
* :class:`TemporalAttention` (ET layer) acts within every node over its frames: multi-head attention whose
  logits add a learned function of the relative sinusoidal encoding of the frame offset ``t - s``,
  ``h_t += W_o sum_s a_ts v_s`` and ``x_t += sum_s a_ts phi(v_s) (x_t - x_s)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodiff.nn.scatter import gather, scatter_sum

__all__ = ["EGNNLayer", "TemporalAttention", "EGTNBlock", "sinusoidal_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal features ``[..., dim]`` of a real-valued tensor ``t`` (any shape)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    ang = t.unsqueeze(-1) * freqs
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class EGNNLayer(nn.Module):
    """One EGNN message-passing layer applied to every frame at once (edges shared across frames)."""

    def __init__(self, hidden: int, edge_dim: int = 0, update_x: bool = True):
        super().__init__()
        # phi_e's first linear layer on [h_i, h_j, d2, e_ij], split so the node terms are computed per node
        # (nodes x frames rows) and gathered, instead of per edge (edges x frames rows)
        self.edge_src = nn.Linear(hidden, hidden)
        self.edge_dst = nn.Linear(hidden, hidden, bias=False)
        self.edge_d2 = nn.Linear(1, hidden, bias=False)
        self.edge_attr = nn.Linear(edge_dim, hidden, bias=False) if edge_dim else None
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node_mlp = _mlp(2 * hidden, hidden, hidden)
        self.update_x = update_x
        if update_x:
            self.coord_mlp = _mlp(hidden, hidden, 1)
            nn.init.zeros_(self.coord_mlp[-1].weight)  # an untrained layer leaves positions alone
            nn.init.zeros_(self.coord_mlp[-1].bias)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h, x, edge_index, edge_attr=None):
        i, j = edge_index  # edge (i, j): the message from j is aggregated on node i
        r = gather(x, i) - gather(x, j)  # [E, F, dim]
        d2 = (r * r).sum(-1, keepdim=True)  # [E, F, 1]
        pre = gather(self.edge_src(h), i) + gather(self.edge_dst(h), j) + self.edge_d2(d2)
        if self.edge_attr is not None and edge_attr is not None:
            pre = pre + self.edge_attr(edge_attr).unsqueeze(1)
        m = self.edge_out(pre)  # [E, F, H]
        n = h.shape[0]
        if self.update_x:
            deg = torch.bincount(i, minlength=n).clamp_min(1).to(x.dtype).view(-1, 1, 1)
            w = self.coord_mlp(m) / (1.0 + d2.clamp_min(1e-12).sqrt())
            x = x + scatter_sum(r * w, i, n) / deg
        agg = scatter_sum(m, i, n)
        h = h + self.node_mlp(torch.cat([self.norm(h), agg], dim=-1))
        return h, x


class TemporalAttention(nn.Module):
    """Equivariant attention over the frames of every node (ET layer), relative sinusoidal frame encoding."""

    def __init__(self, hidden: int, heads: int = 4, rel_dim: int = 32, update_x: bool = True,
                 update_h: bool = True):  # fmt: skip
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.head_dim, self.rel_dim = heads, hidden // heads, rel_dim
        self.norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.rel = _mlp(rel_dim, hidden, heads)
        if update_h:  # not built where nobody reads the features (the last block of a coordinate network)
            self.out = nn.Linear(hidden, hidden)
            self.ff = _mlp(hidden, 2 * hidden, hidden)
            self.ff_norm = nn.LayerNorm(hidden)
        self.update_x, self.update_h = update_x, update_h
        if update_x:
            self.coord = _mlp(self.head_dim, self.head_dim, 1)
            nn.init.zeros_(self.coord[-1].weight)
            nn.init.zeros_(self.coord[-1].bias)

    def forward(self, h, x):
        n, f, hid = h.shape
        q, k, v = self.qkv(self.norm(h)).view(n, f, 3, self.heads, self.head_dim).unbind(2)  # [n, f, H, d]
        offs = torch.arange(f, device=h.device, dtype=h.dtype)
        rel = self.rel(sinusoidal_embedding(offs[:, None] - offs[None, :], self.rel_dim))  # [f, f, heads]
        logits = torch.einsum("nthd,nshd->nhts", q, k) / math.sqrt(self.head_dim)
        a = torch.softmax(logits + rel.permute(2, 0, 1).unsqueeze(0), dim=-1)  # [n, heads, t, s]
        if self.update_h:
            msg = torch.einsum("nhts,nshd->nthd", a, v).reshape(n, f, hid)
            h = h + self.out(msg)
            h = h + self.ff(self.ff_norm(h))
        if self.update_x:
            phi = self.coord(v).squeeze(-1)  # [n, s, heads]
            w = a * phi.permute(0, 2, 1).unsqueeze(2)  # [n, heads, t, s]
            w = w.mean(1)  # average over heads: [n, t, s]
            # sum_s w_ts (x_t - x_s) = (sum_s w_ts) x_t - sum_s w_ts x_s
            x = x + w.sum(-1, keepdim=True) * x - torch.einsum("nts,nsd->ntd", w, x)
        return h, x


class EGTNBlock(nn.Module):
    """One (ES, ET) pair: an EGNN layer per frame, then temporal attention per node. ``update_h=False``: the
    temporal attention updates coordinates only (features returned as they came: nobody reads them)."""

    def __init__(self, hidden: int, edge_dim: int, heads: int = 4, rel_dim: int = 32, update_h: bool = True):
        super().__init__()
        self.spatial = EGNNLayer(hidden, edge_dim)
        self.temporal = TemporalAttention(hidden, heads, rel_dim, update_h=update_h)

    def forward(self, h, x, edge_index, edge_attr):
        h, x = self.spatial(h, x, edge_index, edge_attr)
        return self.temporal(h, x)
