"""Building blocks for point-cloud registration: k-nearest neighbours, PCA normals, rotation-invariant local
descriptors (point-pair features or e3nn spherical-harmonic power spectra), a DCP-style self/cross attention
transformer, log-domain Sinkhorn with slack (RPMNet) and a differentiable weighted Procrustes (Kabsch) head.

Clouds are dense ``[B, N, 3]`` tensors (registration pairs have fixed sizes). Everything the encoders see
is invariant to rotations, reflections and translations of the cloud and equivariant to permutations of its
points, so the features a pair gets do not depend on how either cloud is posed; only the Procrustes head
turns correspondences into a pose.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = [
    "knn",
    "pairwise_distances",
    "NearestNeighbors",
    "gather_neighbors",
    "local_geometry",
    "pair_invariants",
    "PPFEncoder",
    "SphericalHarmonicEncoder",
    "CrossTransformer",
    "log_sinkhorn",
    "weighted_procrustes",
]


DENSE_PAIRS = 1 << 22  # above this many point pairs, neighbours come from a KD-tree (memory linear in points)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[..., N, M]`` between the points of ``a`` ``[..., N, d]`` and ``b``
    ``[..., M, d]``, each computed from the difference of its two points. ``torch.cdist``'s default takes
    the matrix-product form ``|a|^2 + |b|^2 - 2 a.b`` above 25 points, whose rounding grows with the points'
    distance from the origin: a pose translated by 1 m then moves the distances (and the nearest neighbours)
    of a 10 cm object by float round-off times 100, which breaks translation and rotation equivariance far
    above round-off. The direct form is exact to round-off of the distances themselves (and no slower on
    CPU)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, N, k]`` of each point's ``k`` nearest neighbours in its own cloud (itself excluded).
    Dense distances for clouds of up to 2048 points, a KD-tree (scipy) beyond."""
    k = min(k, points.shape[1] - 1)
    if points.shape[1] ** 2 > DENSE_PAIRS:
        return NearestNeighbors(points).query(points, k + 1)[1][..., 1:]
    d = pairwise_distances(points, points)
    d.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return d.topk(k, dim=-1, largest=False).indices


class NearestNeighbors:
    """Nearest points of ``reference`` ``[B, M, 3]`` (or ``[M, 3]``): dense distances for small pairs of
    clouds, scipy's cKDTree (built once, queried on all cores) when queries x references exceed
    ``DENSE_PAIRS``, so memory stays linear in the points (a 10^6-point cloud needs no 10^12 matrix)."""

    def __init__(self, reference: torch.Tensor):
        self.reference = reference[None] if reference.dim() == 2 else reference
        self._trees: list | None = None

    def query(self, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances and indices ``[B, N]`` (``[B, N, k]`` for ``k`` > 1) of the nearest reference points."""
        q = points[None] if points.dim() == 2 else points
        ref = self.reference
        if q.shape[1] * ref.shape[1] <= DENSE_PAIRS:
            d = pairwise_distances(q, ref.to(q.dtype))
            dist, idx = d.topk(k, dim=-1, largest=False) if k > 1 else d.min(dim=-1)
            return dist, idx
        from scipy.spatial import cKDTree

        if self._trees is None:
            self._trees = [cKDTree(r.detach().cpu().double().numpy()) for r in ref]
        out = [
            tree.query(x.detach().cpu().double().numpy(), k=k, workers=-1)
            for tree, x in zip(self._trees, q, strict=True)
        ]
        dist = torch.as_tensor(np.stack([o[0] for o in out]), dtype=q.dtype, device=q.device)
        idx = torch.as_tensor(np.stack([o[1] for o in out]), dtype=torch.long, device=q.device)
        return dist, idx


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, N, C]`` gathered at ``idx`` ``[B, N, k]`` -> ``[B, N, k, C]``."""
    b, n, k = idx.shape
    flat = idx.reshape(b, n * k, 1).expand(-1, -1, x.shape[-1])
    return x.gather(1, flat).view(b, n, k, x.shape[-1])


def local_geometry(points: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA over each point's neighbourhood (itself included): unit normals ``[B, N, 3]`` (sign arbitrary;
    the features below never use the sign) and the square roots of the covariance eigenvalues, ascending,
    ``[B, N, 3]`` (local extent along the normal, across and along the surface)."""
    nb = torch.cat([points.unsqueeze(2), gather_neighbors(points, idx)], dim=2)
    c = nb - nb.mean(dim=2, keepdim=True)
    cov = c.transpose(-1, -2) @ c / nb.shape[2]
    evals, evecs = torch.linalg.eigh(cov)
    return evecs[..., 0], evals.clamp_min(0).sqrt()


def pair_invariants(points: torch.Tensor, normals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Sign-free point-pair features for each neighbour ``[B, N, k, 4]``: ``|d|``, ``|n_i . d^|``,
    ``|n_j . d^|``, ``|n_i . n_j|`` (invariant to rotations, reflections, translations, normal flips)."""
    d = gather_neighbors(points, idx) - points.unsqueeze(2)
    dist = d.norm(dim=-1, keepdim=True)
    dh = d / dist.clamp_min(1e-9)
    nj = gather_neighbors(normals, idx)
    ni = normals.unsqueeze(2)
    return torch.cat(
        [dist, (ni * dh).sum(-1, keepdim=True).abs(), (nj * dh).sum(-1, keepdim=True).abs(),
         (ni * nj).sum(-1, keepdim=True).abs()], dim=-1,
    )  # fmt: skip


def _mlp(*dims: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class _InvariantMessagePassing(nn.Module):
    """Residual max-aggregation over neighbours of ``MLP([h_i, h_j, g_ij])`` (an edge conv on invariants)."""

    def __init__(self, dim: int, geo_dim: int):
        super().__init__()
        # the first layer of MLP([h_i, h_j, g_ij]) split into per-node terms, computed once per node
        self.lin_i = nn.Linear(dim, dim)
        self.lin_j = nn.Linear(dim, dim, bias=False)
        self.lin_g = nn.Linear(geo_dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, idx: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        pre = self.lin_i(h).unsqueeze(2) + gather_neighbors(self.lin_j(h), idx) + self.lin_g(geo)
        m = self.out(nn.functional.silu(pre)).max(dim=2).values
        return self.norm(h + m)


class PPFEncoder(nn.Module):
    """RPMNet-style local features from point-pair features, made fully invariant: a PointNet over each
    neighbourhood's PPFs (max-pooled) plus the PCA extents, then ``num_layers`` invariant edge convs."""

    def __init__(self, dim: int = 64, num_layers: int = 2):
        super().__init__()
        self.edge = _mlp(4, dim, dim)
        self.point = _mlp(dim + 3, dim, dim)
        self.layers = nn.ModuleList([_InvariantMessagePassing(dim, 4) for _ in range(num_layers)])

    def forward(self, points, idx, normals, extents) -> torch.Tensor:
        geo = pair_invariants(points, normals, idx)
        h = self.point(torch.cat([self.edge(geo).max(dim=2).values, extents], dim=-1))
        for layer in self.layers:
            h = layer(h, idx, geo)
        return h


class SphericalHarmonicEncoder(nn.Module):
    """An e3nn alternative: per point, neighbour directions expanded in spherical harmonics (l <= lmax),
    weighted by a learned radial basis and summed; the rotation-invariant power spectrum (the norm of each
    (l, channel) block) is the descriptor, then the same invariant edge convs as :class:`PPFEncoder`."""

    def __init__(
        self, dim: int = 64, num_layers: int = 2, lmax: int = 3, channels: int = 8, num_rbf: int = 8
    ):
        super().__init__()
        from e3nn import o3

        self.irreps = o3.Irreps.spherical_harmonics(lmax)
        self.lmax, self.channels, self.num_rbf = lmax, channels, num_rbf
        self.radial = _mlp(num_rbf, 32, channels * (lmax + 1))
        self.point = _mlp(channels * (lmax + 1) + 3, dim, dim)
        self.layers = nn.ModuleList([_InvariantMessagePassing(dim, 4) for _ in range(num_layers)])

    def forward(self, points, idx, normals, extents) -> torch.Tensor:
        from e3nn import o3

        d = gather_neighbors(points, idx) - points.unsqueeze(2)  # [B, N, k, 3]
        dist = d.norm(dim=-1)
        scale = dist.amax(dim=-1, keepdim=True).clamp_min(1e-9)  # neighbourhood radius (invariant)
        centers = torch.linspace(0, 1, self.num_rbf, dtype=d.dtype, device=d.device)
        rbf = torch.exp(-(((dist / scale).unsqueeze(-1) - centers) ** 2) * self.num_rbf**2)
        w = self.radial(rbf).view(*dist.shape, self.channels, self.lmax + 1)  # [B, N, k, C, L]
        sh = o3.spherical_harmonics(self.irreps, d, normalize=True, normalization="component")
        feats = []
        for l in range(self.lmax + 1):
            y = sh[..., l * l : (l + 1) * (l + 1)]  # [B, N, k, 2l+1]
            a = torch.einsum("bnkc,bnkm->bncm", w[..., l], y) / idx.shape[-1]
            feats.append(a.pow(2).sum(-1))  # power spectrum, [B, N, C]
        geo = pair_invariants(points, normals, idx)
        h = self.point(torch.cat([torch.cat(feats, dim=-1), extents], dim=-1))
        for layer in self.layers:
            h = layer(h, idx, geo)
        return h


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = _mlp(dim, 2 * dim, dim)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        h = self.n1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        o = self.n2(other)
        x = x + self.cross_attn(self.n2(x), o, o, need_weights=False)[0]
        return x + self.ff(self.n3(x))


class CrossTransformer(nn.Module):
    """DCP-style attention: each layer updates both clouds with self-attention and attention to the other
    cloud (shared weights for the two directions). Invariant inputs give invariant outputs."""

    def __init__(self, dim: int = 64, heads: int = 4, num_layers: int = 2):
        super().__init__()
        self.layers = nn.ModuleList([_AttentionBlock(dim, heads) for _ in range(num_layers)])

    def forward(self, hs: torch.Tensor, ht: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            hs, ht = layer(hs, ht), layer(ht, hs)
        return hs, ht


def log_sinkhorn(logits: torch.Tensor, slack: torch.Tensor | None, iters: int) -> torch.Tensor:
    """Approximately doubly-stochastic assignment ``[B, N, M]`` from ``logits`` by alternating row/column
    normalisation in log space. With ``slack`` (a logit, RPMNet), an extra row and column absorb points
    without a partner (partial views), so rows and columns of the result may sum to less than one."""
    if slack is None:
        for _ in range(iters):
            logits = logits - logits.logsumexp(2, keepdim=True)
            logits = logits - logits.logsumexp(1, keepdim=True)
        return logits.exp()
    b, n, m = logits.shape
    padded = torch.nn.functional.pad(logits, (0, 1, 0, 1))
    border = torch.zeros_like(padded, dtype=torch.bool)
    border[:, -1, :], border[:, :, -1] = True, True
    padded = torch.where(border, slack.to(logits.dtype).expand(b, 1, 1), padded)
    real_row = torch.arange(n + 1, device=logits.device).view(1, -1, 1) < n  # the slack row stays as is
    real_col = torch.arange(m + 1, device=logits.device).view(1, 1, -1) < m
    for _ in range(iters):
        padded = padded - torch.where(real_row, padded.logsumexp(2, keepdim=True), 0.0)
        padded = padded - torch.where(real_col, padded.logsumexp(1, keepdim=True), 0.0)
    logits = padded[:, :-1, :-1]
    return logits.exp()


def weighted_procrustes(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None, eps: float = 1e-9
) -> torch.Tensor:
    """The rigid transform ``[B, 4, 4]`` minimising ``sum_i w_i |R x_i + t - y_i|^2`` (Kabsch with weights;
    the SVD runs in float64 and the reflection case is corrected so ``det R = +1``)."""
    if w is None:
        w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(eps)
    xm = (w.unsqueeze(-1) * x).sum(1)
    ym = (w.unsqueeze(-1) * y).sum(1)
    cov = ((x - xm[:, None]) * w.unsqueeze(-1)).transpose(1, 2) @ (y - ym[:, None])  # [B, 3, 3]
    u, _, vh = torch.linalg.svd(cov.double())
    d = torch.det(vh.transpose(1, 2) @ u.transpose(1, 2)).sign()
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    r = (vh.transpose(1, 2) @ fix @ u.transpose(1, 2)).to(x.dtype)
    t = ym - (r @ xm.unsqueeze(-1)).squeeze(-1)
    out = torch.eye(4, dtype=x.dtype, device=x.device).repeat(x.shape[0], 1, 1)
    out[:, :3, :3], out[:, :3, 3] = r, t
    return out


Encoder = Literal["ppf", "e3nn"]
