"""EQGAT layer (Le et al., "Navigating the design space of equivariant diffusion-based generative models
for de novo 3D molecule generation", ICLR 2024), written from the paper's description.

Nodes carry scalars ``s`` [N, S], vectors ``v`` [N, 3, V] and positions ``p`` [N, 3]; edges carry
features ``e`` [E, D]. Edge ``k`` goes from ``j = edge_index[0, k]`` to ``i = edge_index[1, k]``. One layer:

1. normalise: LayerNorm on ``s``; ``v`` divided by the RMS of its channel norms (rotation-equivariant);
2. an edge MLP on ``[s_i, s_j, rbf(d_ij), d_ij, p_i . p_j, e_ij]`` (rotation/reflection invariant; ``p`` is
   zero-CoM; ``rbf`` are Gaussians on a grid of distances) gives per-channel attention logits, softmax over
   the neighbours ``j`` of ``i``;
3. scalar message ``sum_j a_ij * W s_j``; vector message ``mean_j (g_ij u_ij + h_ij * W v_j)`` with the unit
   bond direction ``u_ij = (p_i - p_j)/d_ij``;
4. a gated equivariant block mixes ``s`` and ``|v|`` (scalars) and gates ``v`` (vectors);
5. positions move along the atom-pair vectors, ``p_i += mean_j w_ij (p_i - p_j) / (1 + d_ij)`` (EGNN's
   normalised update; ``w`` starts at zero, so an untrained layer keeps positions); with
   ``position_update="unit"``, ``p_i += mean_j tanh(w_ij) u_ij`` (bounded, 1 A per layer at most). Edges are
   updated from ``[e_ij, s_i + s_j, rbf(d_ij), d_ij]`` (symmetric in i and j, so symmetric edges stay
   symmetric).

Every operation is E(3)-equivariant (no cross products, so reflections too) and permutation-equivariant;
``tests/unit/nn/test_eqgat.py`` checks it in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geodiff.nn.scatter import gather, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["EQGATLayer", "GatedEquivariantBlock", "GaussianRBF", "VectorNorm", "pair_linear"]


def pair_linear(lin: nn.Linear, x: torch.Tensor, edge_index: torch.Tensor, before=(), after=(),
                symmetric: bool = False) -> torch.Tensor:  # fmt: skip
    """``lin(cat([*before, x_i, x_j, *after]))`` for every edge ``j -> i`` (``x_i + x_j`` in place of
    ``x_i, x_j`` with ``symmetric=True``), without building the edge-level input.

    The node block of ``lin``'s weight is applied to ``x`` once per node and the products are gathered per
    edge: N x D x H multiply-adds instead of E x D x H (E ~ 18 N for QM9), and no [E, 2D] concatenation. Same
    parameters, same function as the plain layer on the concatenation, up to rounding.
    """
    j, i = edge_index
    w = lin.weight
    h, d = w.shape[0], x.shape[-1]
    nb = sum(t.shape[-1] for t in before)
    k = d if symmetric else 2 * d
    if symmetric:
        px = F.linear(x, w[:, nb : nb + d])
        out = gather(px, i) + gather(px, j)
    else:
        px = F.linear(x, torch.cat([w[:, nb : nb + d], w[:, nb + d : nb + k]], dim=0))  # [N, 2H]
        out = gather(px[:, :h], i) + gather(px[:, h:], j)
    parts = [*before, *after]
    if parts:
        rest = torch.cat([w[:, :nb], w[:, nb + k :]], dim=1)
        return out + F.linear(torch.cat(parts, dim=-1), rest, lin.bias)
    return out if lin.bias is None else out + lin.bias


class GaussianRBF(nn.Module):
    """``num`` Gaussians ``exp(-((d - mu_k) / w)^2)`` on an even grid ``mu`` in [0, cutoff], ``w`` = spacing;
    ``num = 0`` gives an empty feature. Invariant, smooth, and fine enough (0.2 A at 32 / 6 A) to tell single
    from double from triple bond lengths."""

    def __init__(self, num: int = 32, cutoff: float = 6.0):
        super().__init__()
        self.num = num
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num) if num else torch.zeros(0),
                             persistent=False)  # fmt: skip
        self.width = cutoff / max(num - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        # clamp the exponent: far-away Gaussians would underflow to denormal floats, which make every
        # matrix product that reads them several times slower on CPUs
        return torch.exp(-(((d - self.centers.to(d.dtype)) / self.width) ** 2).clamp_max(50.0))


class VectorNorm(nn.Module):
    """Scale vector channels ``[N, 3, V]`` by the inverse RMS of their norms (per node), equivariantly."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        rms = (v.pow(2).sum(dim=1).mean(dim=-1, keepdim=True) + self.eps).sqrt()  # [N, 1]
        return v / rms.unsqueeze(1)


class GatedEquivariantBlock(nn.Module):
    """PaiNN/EQGAT gated block: ``s' = MLP([s, |W1 v|])``, ``v' = gate(s) * W2 v``.

    ``vector_output=False`` builds the scalar path only (no ``W2``, no gate outputs; ``forward`` returns
    ``(ds, None)``): the block of a last layer, whose vectors nobody reads, so that every parameter takes
    part in the loss (DDP needs no search for unused parameters)."""

    def __init__(self, s_dim: int, v_dim: int, vector_output: bool = True):
        super().__init__()
        self.w1 = nn.Linear(v_dim, v_dim, bias=False)
        if vector_output:
            self.w2 = nn.Linear(v_dim, v_dim, bias=False)
        out = s_dim + v_dim if vector_output else s_dim
        self.mlp = nn.Sequential(nn.Linear(s_dim + v_dim, s_dim), nn.SiLU(), nn.Linear(s_dim, out))
        self.s_dim, self.vector_output = s_dim, vector_output

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        vn = (self.w1(v).pow(2).sum(dim=1) + 1e-8).sqrt()  # [N, V] invariant
        out = self.mlp(torch.cat([s, vn], dim=-1))
        if not self.vector_output:
            return out, None
        ds, gate = out[:, : self.s_dim], out[:, self.s_dim :]
        return ds, gate.unsqueeze(1) * self.w2(v)


class EQGATLayer(nn.Module):
    """One EQGAT layer on a (fully connected) molecular graph; returns updated ``(s, v, p, e)``.

    ``vector_output=False`` (the last layer of a stack whose vectors are not read): the gated block has no
    vector gate, and the returned ``v`` is the attention update alone."""

    def __init__(self, s_dim: int, v_dim: int, e_dim: int, hidden: int | None = None,
                 update_positions: bool = True, update_edges: bool = True, rbf_dim: int = 0,
                 rbf_cutoff: float = 6.0, position_update: str = "scaled",
                 vector_output: bool = True):  # fmt: skip
        super().__init__()
        if position_update not in ("scaled", "unit"):
            raise ValueError(f"position_update must be 'scaled' or 'unit', got {position_update!r}")
        hidden = hidden or s_dim
        self.s_dim, self.v_dim, self.e_dim = s_dim, v_dim, e_dim
        self.position_update = position_update
        self.norm_s = nn.LayerNorm(s_dim)
        self.norm_v = VectorNorm()
        self.norm_e = nn.LayerNorm(e_dim)
        self.rbf = GaussianRBF(rbf_dim, rbf_cutoff)
        # edge MLP -> [attention logits S | direction gate V | vector gate V | position gate 1]
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * s_dim + 2 + rbf_dim + e_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, s_dim + 2 * v_dim + 1),
        )
        if position_update == "scaled":  # start as the identity on positions
            with torch.no_grad():
                self.edge_mlp[-1].weight[-1].zero_()
                self.edge_mlp[-1].bias[-1].zero_()
        self.w_s = nn.Linear(s_dim, s_dim)
        self.w_v = nn.Linear(v_dim, v_dim, bias=False)
        self.gated = GatedEquivariantBlock(s_dim, v_dim, vector_output)
        self.update_positions = update_positions
        self.update_edges = update_edges
        if update_edges:
            self.edge_update = nn.Sequential(
                nn.Linear(e_dim + s_dim + 1 + rbf_dim, e_dim), nn.SiLU(), nn.Linear(e_dim, e_dim)
            )

    @torch.no_grad()
    def make_identity_(self) -> EQGATLayer:
        """Zero the last projection of every residual branch, so that the layer returns ``(s, v, p, e)``
        unchanged (exactly) while every zeroed weight still gets a gradient: a layer added to a trained
        stack (a deeper warm start) starts as a no-op and learns from there. Returns ``self``."""
        S = self.s_dim
        last = self.edge_mlp[-1]
        last.weight[S:].zero_()  # direction gate, vector gate and position gate (logits stay random)
        last.bias[S:].zero_()
        self.w_s.weight.zero_()  # attention messages: uniform weights times zero values
        self.w_s.bias.zero_()
        self.gated.mlp[-1].weight.zero_()  # gated block: no scalar update, zero gate on the vectors
        self.gated.mlp[-1].bias.zero_()
        if self.update_edges:
            self.edge_update[-1].weight.zero_()
            self.edge_update[-1].bias.zero_()
        return self

    @staticmethod
    def geometry(p: torch.Tensor, edge_index: torch.Tensor):
        j, i = edge_index
        p_i, p_j = gather(p, i), gather(p, j)
        r = p_i - p_j
        d = (r.pow(2).sum(-1, keepdim=True) + 1e-8).sqrt()
        return r / d, d, (p_i * p_j).sum(-1, keepdim=True)

    def edge_geometry(self, p: torch.Tensor, edge_index: torch.Tensor):
        """``(u, d, p_i . p_j, rbf(d))`` of every edge: what :meth:`forward_with_geometry` reads."""
        u, d, dot = self.geometry(p, edge_index)
        return u, d, dot, self.rbf(d)

    def forward(self, s, v, p, e, edge_index):
        return self.forward_with_geometry(s, v, p, e, edge_index)[:4]

    def forward_with_geometry(self, s, v, p, e, edge_index, geom=None):
        """:meth:`forward` that also returns the edge geometry of the new positions (``None`` without the edge
        update), so that a stack of identical layers computes distances and RBFs once per layer, not twice.
        ``geom``: :meth:`edge_geometry` of ``p`` by a layer with the same RBF (computed here if ``None``)."""
        n = s.shape[0]
        j, i = edge_index
        s_n, v_n, e_n = self.norm_s(s), self.norm_v(v), self.norm_e(e)
        u, d, dot, rbf = self.edge_geometry(p, edge_index) if geom is None else geom
        hidden = pair_linear(self.edge_mlp[0], s_n, edge_index, after=(rbf, d, dot, e_n))
        out = self.edge_mlp[2](self.edge_mlp[1](hidden))  # = edge_mlp(cat([s_i, s_j, rbf, d, p_i.p_j, e_ij]))
        S, V = self.s_dim, self.v_dim
        logits, g_dir, g_vec, w_pos = out[:, :S], out[:, S : S + V], out[:, S + V : S + 2 * V], out[:, -1:]
        attn = scatter_softmax(logits, i, n)
        s = s + scatter_sum(attn * gather(self.w_s(s_n), j), i, n)
        msg_v = u.unsqueeze(-1) * g_dir.unsqueeze(1) + g_vec.unsqueeze(1) * gather(self.w_v(v_n), j)
        v = v + scatter_mean(msg_v, i, n)
        ds, dv = self.gated(self.norm_s(s), self.norm_v(v))
        s, v = s + ds, (v if dv is None else v + dv)
        if self.update_positions:
            if self.position_update == "unit":
                p = p + scatter_mean(torch.tanh(w_pos) * u, i, n)
            else:
                p = p + scatter_mean(w_pos * u * (d / (1.0 + d)), i, n)
        new_geom = None
        if self.update_edges:
            new_geom = self.edge_geometry(p, edge_index)
            d_new, rbf_new = new_geom[1], new_geom[3]
            upd = pair_linear(self.edge_update[0], s, edge_index, before=(e_n,), after=(rbf_new, d_new),
                              symmetric=True)  # fmt: skip
            e = e + self.edge_update[2](self.edge_update[1](upd))  # edge_update(cat([e, s_i + s_j, rbf, d]))
        return s, v, p, e, new_geom
