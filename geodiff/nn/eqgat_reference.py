"""The EQGAT-diff layer as its reference code computes it (tuanle618/eqgat-diff, ``e3moldiffusion/convs.py``
``EQGATGlobalEdgeConvFinal``, ``modules.py`` ``LayerNorm`` / ``GatedEquivBlock`` / ``SE3Norm``), written here
from that reading for the faithful variant (``model=eqgat_diff_reference``); geodiff's own layer is
:mod:`geodiff.nn.eqgat`.

Nodes carry scalars ``s`` [N, S], vectors ``v`` [N, 3, V], positions ``p`` [N, 3]; edge ``k`` runs from
``j = edge_index[0, k]`` to ``i = edge_index[1, k]`` with invariant / equivariant attributes
(:func:`edge_attributes`): ``d = |p_i - p_j|``, ``a = p_i . p_j``, ``r = (p_i - p_j) / (1 + d)`` and features
``e`` [E, D]. One layer:

1. ``e <- W_pre e``; an edge MLP on ``[s_i, s_j, d, a, e, |p_i|, |p_j|]`` gives per-channel attention logits
   (softmax over the neighbours ``j``), vector gates, new edge features and a position gate ``g``;
2. ``s += sum_j a_ij W_s s_j``; ``v += mean_j (r_ij x g0_ij + g1_ij W_v v_j)`` (the second term from the
   second layer on); ``p += SE3Norm(mean_j g_ij r_ij)``: the update scaled by the inverse of its mean norm
   over the molecule, times a learned scalar; ``e <- W_post silu(e_msg + e)``;
3. a gated equivariant block on ``(s, |W v|^2)`` adds to ``s`` and gates ``v`` (a linear map on the gated
   vectors except in the last layer).

Before each layer, the reference's graph-wise normalisation (:class:`GraphLayerNorm`): scalars centred by
the molecule's mean and divided by its mean square (not its root: as the code runs), vectors divided by the
molecule's mean squared norm. Everything is E(3)-equivariant (no cross products) and permutation-equivariant
(``tests/unit/nn/test_eqgat_reference.py``, float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geodiff.nn.scatter import gather, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["EQGATReferenceLayer", "GraphLayerNorm", "SE3Norm", "edge_attributes"]


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """The reference's ``DenseLayer``: PyTorch's default weight initialisation, zero bias."""
    lin = nn.Linear(d_in, d_out, bias=bias)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


def edge_attributes(p: torch.Tensor, edge_index: torch.Tensor):
    """``(d, a, r)`` per edge ``j -> i``: ``d = sqrt(max(|p_i - p_j|^2, 1e-6))`` [E, 1], ``a = p_i . p_j``
    [E, 1] and ``r = (p_i - p_j) / (1 + d)`` [E, 3]."""
    j, i = edge_index
    p_i, p_j = gather(p, i), gather(p, j)
    diff = p_i - p_j
    d = diff.pow(2).sum(-1, keepdim=True).clamp_min(1e-6).sqrt()
    return d, (p_i * p_j).sum(-1, keepdim=True), diff / (1.0 + d)


class GraphLayerNorm(nn.Module):
    """The reference's per-molecule normalisation of ``(s, v)`` (see the module docstring)."""

    def __init__(self, s_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(s_dim))
        self.bias = nn.Parameter(torch.zeros(s_dim))

    def forward(self, s, v, batch, num_graphs: int):
        s = s - gather(scatter_mean(s.mean(-1, keepdim=True), batch, num_graphs), batch)
        var = scatter_mean(s.pow(2).mean(-1, keepdim=True), batch, num_graphs).clamp_min(self.eps)
        s = s / gather(var, batch) * self.weight + self.bias
        vsq = scatter_mean(v.pow(2).sum(1).mean(-1, keepdim=True), batch, num_graphs).clamp_min(self.eps)
        return s, v / gather(vsq, batch).unsqueeze(1)


class SE3Norm(nn.Module):
    """``w * x / (mean_molecule |x| + eps)`` for vectors ``x`` [N, 3] (``w`` a learned scalar, 1 at start)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, 1))

    def forward(self, x, batch, num_graphs: int):
        norm = scatter_mean(x.norm(dim=-1, keepdim=True), batch, num_graphs)
        return self.weight * x / (gather(norm, batch) + self.eps)


class EQGATReferenceLayer(nn.Module):
    """One reference EQGAT layer (module docstring); returns updated ``(s, v, p, e)``.

    ``vector_input``: read the incoming vectors in the messages (the reference's ``has_v_in``: every layer
    but the first, whose vectors are zero); ``mlp_update``: the gated block's two-layer MLP and output map
    (every layer but the last)."""

    def __init__(self, s_dim: int, v_dim: int, e_dim: int, vector_input: bool = True, mlp_update: bool = True,
                 eps: float = 1e-6):  # fmt: skip
        super().__init__()
        self.s_dim, self.v_dim, self.e_dim = s_dim, v_dim, e_dim
        self.vector_input, self.mlp_update, self.eps = vector_input, mlp_update, eps
        v_mul = 2 if vector_input else 1
        self.edge_pre = _linear(e_dim, e_dim)
        self.edge_post = _linear(e_dim, e_dim)
        # [s_i, s_j, d, a, e, |p_i|, |p_j|] -> [attention S | vector gates v_mul V | edge D | position gate 1]
        self.edge_net = nn.Sequential(_linear(2 * s_dim + e_dim + 4, s_dim), nn.SiLU(),
                                      _linear(s_dim, v_mul * v_dim + s_dim + e_dim + 1))  # fmt: skip
        self.scalar_net = _linear(s_dim, s_dim)
        self.vector_net = _linear(v_dim, v_dim, bias=False) if vector_input else None
        self.pos_norm = SE3Norm()
        # gated equivariant block (the reference's GatedEquivBlock with hs = S, hv = V)
        self.w_v0 = _linear(v_dim, 2 * v_dim, bias=False)
        if mlp_update:
            self.w_s = nn.Sequential(_linear(v_dim + s_dim, s_dim), nn.SiLU(), _linear(s_dim, v_dim + s_dim))
            self.w_v1 = _linear(v_dim, v_dim, bias=False)
        else:
            self.w_s = _linear(v_dim + s_dim, v_dim + s_dim)
            self.w_v1 = None

    def forward(self, s, v, p, e, edge_index, batch, num_graphs: int, attrs=None):
        """``attrs``: :func:`edge_attributes` of ``p`` (computed if None)."""
        n = s.shape[0]
        j, i = edge_index
        d, a, r = edge_attributes(p, edge_index) if attrs is None else attrs
        S, V, D = self.s_dim, self.v_dim, self.e_dim
        e = self.edge_pre(e)
        pn = p.pow(2).sum(-1, keepdim=True).clamp_min(1e-6).sqrt()
        edge_in = [gather(s, i), gather(s, j), d, a, e, gather(pn, i), gather(pn, j)]
        out = self.edge_net(torch.cat(edge_in, dim=-1))
        logits, gates, e_msg, g = out.split([S, out.shape[1] - S - D - 1, D, 1], dim=-1)
        attn = scatter_softmax(logits, i, n)
        ms = scatter_sum(attn * gather(self.scalar_net(s), j), i, n)
        if self.vector_input:
            g0, g1 = gates.chunk(2, dim=-1)
            msg_v = r.unsqueeze(-1) * g0.unsqueeze(1) + g1.unsqueeze(1) * gather(self.vector_net(v), j)
        else:
            msg_v = r.unsqueeze(-1) * gates.unsqueeze(1)
        mv = scatter_mean(msg_v, i, n)
        mp = scatter_mean(g * r, i, n)
        s, v = s + ms, v + mv
        p = p + self.pos_norm(mp, batch, num_graphs)
        e = self.edge_post(F.silu(e_msg + e))
        vv = self.w_v0(v)
        vdot, vpart = vv[..., :V], vv[..., V:]
        upd = self.w_s(torch.cat([s, vdot.pow(2).sum(1).clamp_min(self.eps)], dim=-1))
        gate, ds = upd[:, :V], upd[:, V:]
        dv = gate.unsqueeze(1) * vpart
        if self.w_v1 is not None:
            dv = self.w_v1(dv)
        return s + ds, v + dv, p, e
