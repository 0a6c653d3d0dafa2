"""Frame averaging (Puny et al., "Frame Averaging for Invariant and Equivariant Network Design", ICLR 2022):
make any backbone exactly E(d)- or SE(d)-equivariant by averaging it over a small input-dependent frame.

For the points ``X`` of one system (rows, ``[n, d]``) with centroid ``c`` and covariance
``C = (X - c)^T (X - c) / n = U diag(lambda) U^T`` (eigenvalues descending), the PCA frames are
``F = U S`` for the sign matrices ``S = diag(+-1)``: all ``2^d`` for E(d), the ``2^(d-1)`` with
``det F = +1`` for SE(d). A rotated and translated copy ``X Q^T + t`` has the frames ``Q F``, so the
canonical coordinates ``(X - c) F`` are the same set for every copy and

    <phi>(X) = 1/|F(X)| sum_F  phi((X - c) F) F^T  (+ c for positions)

is exactly equivariant, whatever ``phi`` is (a plain MLP or attention on raw coordinates). Permutation
equivariance is the backbone's own.

Degenerate systems, where eigenvalues coincide (relative gap below ``tol``), have no unique PCA axes; the
frame then becomes a finite subgroup of the directions left free, and the average is exact only for the
rotations in that subgroup (``Frames.exact`` is False for these systems; the error shrinks as the subgroup
grows):

* 3D, two equal eigenvalues (two points, collinear points, an axially symmetric or equilateral set): the
  distinct eigenvector ``a`` is an axis; the plane orthogonal to it is covered by ``num_circle`` rotations
  about ``a`` (x 2 signs of ``a``; x 2 in-plane reflections for E(3)).
* 3D, all equal (one point, isotropic sets such as a regular tetrahedron or octahedron): the 24 rotations of
  the cube (48 with reflections for E(3)) applied to an arbitrary orthonormal basis. For one point the
  result is exact (the cube group averages every vector to zero, as equivariance demands).
* 2D, equal eigenvalues: ``num_circle`` rotations (x 2 reflections for E(2)).

Fewer than ``d + 1`` points are covered by these cases: three points in 3D span a plane and have three
distinct eigenvalues in general (the third, zero, names the normal); two points are collinear; one is
isotropic.

Cost: the backbone runs once per frame, ``M`` = 8 (E(3)), 4 (SE(3), E(2)) or 2 (SE(2)) times for generic
inputs, more when a batch holds a degenerate system (every system then pads to the largest frame count
with zero weights).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from geodiff.errors import GeodiffValueError
from geodiff.nn.scatter import scatter_sum

__all__ = ["Frames", "pca_frames", "frame_average", "FrameAveraging", "GROUPS"]

Group = Literal["E", "SE"]
GROUPS = ("E", "SE")
OutputKind = Literal["position", "vector", "scalar"]


@dataclass
class Frames:
    """PCA frames of a batch of systems.

    Attributes:
        rotations: ``[M, B, d, d]``, frame axes as columns (orthogonal; det +1 for SE(d)).
        centers: ``[B, d]`` centroids.
        weights: ``[M, B]``, each system's frame weights (sum 1 over ``M``; 0 for padding frames).
        exact: ``[B]`` True where the system's frame is finite and the average exactly equivariant.
    """

    rotations: torch.Tensor
    centers: torch.Tensor
    weights: torch.Tensor
    exact: torch.Tensor

    @property
    def size(self) -> int:
        return self.rotations.shape[0]


def _signed_permutations(d: int, proper: bool, dtype) -> torch.Tensor:
    """The signed permutation matrices of size ``d`` (the cube's symmetries), proper ones only if asked."""
    mats = []
    for perm in itertools.permutations(range(d)):
        for signs in itertools.product((1.0, -1.0), repeat=d):
            m = torch.zeros(d, d, dtype=dtype)
            m[list(range(d)), list(perm)] = torch.tensor(signs, dtype=dtype)
            if not proper or torch.linalg.det(m) > 0:
                mats.append(m)
    return torch.stack(mats)


def _sign_frames(U: torch.Tensor, proper: bool) -> list[torch.Tensor]:
    """``U diag(s)`` for every sign vector ``s`` (``[B, d, d]`` each); det +1 only when ``proper``."""
    d = U.shape[-1]
    out = []
    det = torch.linalg.det(U).sign()
    for signs in itertools.product((1.0, -1.0), repeat=d - (1 if proper else 0)):
        s = torch.tensor(signs, dtype=U.dtype).expand(U.shape[0], -1)
        if proper:  # the last sign makes det(U S) = +1
            s = torch.cat([s, (det * s.prod(-1)).unsqueeze(-1)], -1)
        out.append(U * s.unsqueeze(-2))
    return out


def _circle_frames(axis, b1, b2, num_circle: int, proper: bool) -> list[torch.Tensor]:
    """3D frames ``[+-a, b(theta), +-b_perp(theta)]`` for ``num_circle`` angles about the axis ``a``."""
    out = []
    for k in range(num_circle):
        th = torch.tensor(2 * torch.pi * k / num_circle, dtype=b1.dtype)
        b = torch.cos(th) * b1 + torch.sin(th) * b2
        c = torch.linalg.cross(axis, b)  # completes a right-handed frame with +a
        for sa in (1.0, -1.0):
            for sc in (1.0, -1.0) if not proper else (sa,):
                out.append(torch.stack([sa * axis, b, sc * c], -1))
    return out


def _planar_frames(U: torch.Tensor, num_circle: int, proper: bool) -> list[torch.Tensor]:
    """2D frames ``U R(theta)`` (and ``U diag(1, -1) R(theta)`` for E(2)) for ``num_circle`` angles."""
    out = []
    for k in range(num_circle):
        th = torch.tensor(2 * torch.pi * k / num_circle, dtype=U.dtype)
        rot = torch.stack([torch.stack([th.cos(), -th.sin()]), torch.stack([th.sin(), th.cos()])])
        base = U * torch.linalg.det(U).sign().view(-1, 1, 1)  # any proper basis
        out.append(base @ rot)
        if not proper:
            out.append(base @ torch.diag(torch.tensor([1.0, -1.0], dtype=U.dtype)) @ rot)
    return out


def pca_frames(
    pos: torch.Tensor,
    batch: torch.Tensor | None = None,
    num_graphs: int | None = None,
    group: Group = "E",
    node_weights: torch.Tensor | None = None,
    tol: float = 1e-4,
    num_circle: int = 12,
) -> Frames:
    """PCA frames of every system (see the module docstring), computed in float64.

    Args:
        pos: ``[N, ..., d]`` positions (``d`` = 2 or 3); every middle axis (trajectory frames) is pooled.
        batch: ``[N]`` system of each node (default: one system).
        group: ``E`` (rotations and reflections) or ``SE`` (rotations only).
        node_weights: ``[N]`` optional positive invariant weights (masses, atom types) for the centroid
            and covariance; they break symmetric cases that the positions alone leave degenerate.
        tol: eigenvalues closer than ``tol`` times the largest count as equal.
        num_circle: rotations covering a degenerate plane.
    """
    if group not in GROUPS:
        raise GeodiffValueError(f"group: expected E or SE, got {group!r}")
    if num_circle < 1:
        raise GeodiffValueError(f"num_circle: expected at least 1, got {num_circle}")
    d = pos.shape[-1]
    if d not in (2, 3):
        raise GeodiffValueError(f"pos: frame averaging needs 2D or 3D positions, got {list(pos.shape)}")
    n = pos.shape[0]
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    B = num_graphs if num_graphs is not None else (int(batch.max()) + 1 if n else 0)
    per = pos[0].numel() // d if n else 1
    x = pos.detach().to(torch.float64).reshape(n * per, d)
    b = batch.repeat_interleave(per)
    w = (node_weights.detach().to(torch.float64).repeat_interleave(per) if node_weights is not None
         else torch.ones(n * per, dtype=torch.float64, device=pos.device))  # fmt: skip
    total = scatter_sum(w, b, B).clamp_min(1e-300)
    c = scatter_sum(x * w[:, None], b, B) / total[:, None]
    r = x - c[b]
    cov = scatter_sum(w[:, None, None] * r[:, :, None] * r[:, None, :], b, B) / total[:, None, None]
    lam, U = torch.linalg.eigh(cov)
    lam, U = lam.flip(-1), U.flip(-1)  # descending
    scale = lam[:, 0].clamp_min(1e-300)
    gaps = (lam[:, :-1] - lam[:, 1:]) / scale[:, None] > tol  # [B, d-1]: True where distinct
    empty = lam[:, 0] <= 1e-24 * max(float((x * x).max()) if x.numel() else 1.0, 1e-300)
    proper = group == "SE"
    cases: list[tuple[torch.Tensor, list[torch.Tensor], bool]] = []  # (mask [B], frames, exact)
    generic = gaps.all(-1) & ~empty
    cases.append((generic, _sign_frames(U, proper), True))
    if d == 3:
        iso = ~gaps.any(-1) | empty
        top = gaps[:, 0] & ~gaps[:, 1] & ~empty  # lambda1 > lambda2 = lambda3: axis u1
        bottom = ~gaps[:, 0] & gaps[:, 1] & ~empty  # lambda1 = lambda2 > lambda3: axis u3
        axis = torch.where(top[:, None], U[:, :, 0], U[:, :, 2])
        b1 = torch.where(top[:, None], U[:, :, 1], U[:, :, 0])
        b2 = torch.linalg.cross(axis, b1)
        cases.append((top | bottom, _circle_frames(axis, b1, b2, num_circle, proper), False))
        cube = _signed_permutations(3, proper, torch.float64).to(pos.device)
        base = U * torch.linalg.det(U).sign().view(-1, 1, 1)
        cases.append((iso, [base @ g for g in cube], False))
    else:
        cases.append((~generic, _planar_frames(U, num_circle, proper), False))
    M = max(len(fr) for mask, fr, _ in cases if bool(mask.any())) if B else 1
    eye = torch.eye(d, dtype=torch.float64, device=pos.device).expand(B, d, d)
    rot = eye.unsqueeze(0).repeat(M, 1, 1, 1).clone()
    weights = torch.zeros(M, B, dtype=torch.float64, device=pos.device)
    exact = torch.zeros(B, dtype=torch.bool, device=pos.device)
    for mask, frames, is_exact in cases:
        if not bool(mask.any()):
            continue
        for m, f in enumerate(frames):
            rot[m][mask] = f[mask]
            weights[m][mask] = 1.0 / len(frames)
        exact |= mask & is_exact
    exact |= empty  # one point: every vector output averages to zero over the cube group, exactly
    return Frames(rot, c, weights, exact)


def _to_frame(x: torch.Tensor, R: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Canonical coordinates ``(x - c) R`` of ``x`` ``[N, ..., d]`` with per-node ``R`` ``[N, d, d]``."""
    if c is not None:
        x = x - c.view(c.shape[0], *([1] * (x.dim() - 2)), -1)
    return torch.einsum("n...i,nij->n...j", x, R)


def _from_frame(y: torch.Tensor, R: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    y = torch.einsum("n...j,nij->n...i", y, R)
    if c is not None:
        y = y + c.view(c.shape[0], *([1] * (y.dim() - 2)), -1)
    return y


def frame_average(
    fn: Callable,
    positions: torch.Tensor | Sequence[torch.Tensor],
    batch: torch.Tensor | None = None,
    output_kinds: OutputKind | Sequence[OutputKind] | dict[str, OutputKind] = "position",
    vectors: Sequence[torch.Tensor] = (),
    frames: Frames | None = None,
    output_systems: dict | None = None,
    **frame_options,
):
    """``<fn>``: ``fn`` averaged over the PCA frames of ``positions`` (exactly E(d)/SE(d)-equivariant).

    Args:
        fn: called as ``fn(*canonical_positions, *canonical_vectors)``; returns a tensor, a tuple or a dict.
        positions: one ``[N, ..., d]`` tensor or several (all pooled per system for the frames; their
            canonical copies are centred and rotated).
        batch: ``[N]`` system of each node.
        output_kinds: per output, ``position`` (rotated back and re-centred), ``vector`` (rotated back) or
            ``scalar`` (invariant: averaged as is).
        vectors: ``[N, ..., d]`` inputs that rotate but do not translate (velocities, forces).
        frames: precomputed :func:`pca_frames` (else computed from ``positions`` with ``frame_options``).
        output_systems: for outputs whose rows are not nodes (edges), the system of every row, keyed like
            ``output_kinds`` (default: ``batch``); such outputs must be ``scalar``.
    Returns:
        ``fn``'s outputs, averaged (same structure).
    """
    pos_list = [positions] if isinstance(positions, torch.Tensor) else list(positions)
    if frames is None:
        n = pos_list[0].shape[0]
        stacked = torch.cat([p.reshape(n, -1, p.shape[-1]) for p in pos_list], 1)
        frames = pca_frames(stacked, batch, **frame_options)
    if batch is None:
        batch = torch.zeros(pos_list[0].shape[0], dtype=torch.long, device=pos_list[0].device)
    dtype = pos_list[0].dtype
    c = frames.centers.to(dtype)[batch]
    total = None
    for m in range(frames.size):
        if not bool((frames.weights[m] > 0).any()):
            continue
        R = frames.rotations[m].to(dtype)[batch]
        w_sys = frames.weights[m].to(dtype)
        w = w_sys[batch]
        out = fn(*[_to_frame(p, R, c) for p in pos_list], *[_to_frame(v, R, None) for v in vectors])
        items = _items(out, output_kinds)
        back = {}
        for key, (y, kind) in items.items():
            rows = (output_systems or {}).get(key)
            if (
                rows is not None
            ):  # per-edge (or other) rows: invariant, weighted by their system's frame weight
                if kind != "scalar":
                    raise GeodiffValueError(f"output_systems: {key!r} must be a scalar output, not {kind!r}")
                back[key] = y * w_sys[rows].view(-1, *([1] * (y.dim() - 1)))
                continue
            if kind == "position":
                y = _from_frame(y, R, c)
            elif kind == "vector":
                y = _from_frame(y, R, None)
            elif kind != "scalar":
                raise GeodiffValueError(f"output_kinds: expected position, vector or scalar, got {kind!r}")
            back[key] = y * w.view(-1, *([1] * (y.dim() - 1)))
        total = back if total is None else {k: total[k] + v for k, v in back.items()}
    assert total is not None
    if isinstance(output_kinds, dict):
        return total
    if isinstance(output_kinds, str):
        return total[0]
    return tuple(total[i] for i in range(len(total)))


def _items(out, kinds) -> dict:
    if isinstance(kinds, dict):
        return {k: (out[k], kinds[k]) for k in kinds}
    if isinstance(kinds, str):
        return {0: (out, kinds)}
    return {i: (o, k) for i, (o, k) in enumerate(zip(out, kinds, strict=True))}


class FrameAveraging(nn.Module):
    """Wrap a backbone ``backbone(pos, *args, **kwargs)`` whose first argument is node positions
    ``[N, ..., d]``: the wrapped module takes ``(pos, batch, *args, **kwargs)`` and is exactly
    E(d)- (``group="E"``) or SE(d)-equivariant (``"SE"``); ``output_kinds`` as :func:`frame_average`.
    Other arguments must be invariant (features, graphs, times)."""

    def __init__(self, backbone: nn.Module, output_kinds="position", group: Group = "E",
                 tol: float = 1e-4, num_circle: int = 12):  # fmt: skip
        super().__init__()
        if group not in GROUPS:
            raise GeodiffValueError(f"group: expected E or SE, got {group!r}")
        self.backbone, self.output_kinds = backbone, output_kinds
        self.group, self.tol, self.num_circle = group, tol, num_circle

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None, *args, **kwargs):
        num_graphs = kwargs.pop("num_graphs", None)
        frames = pca_frames(pos, batch, num_graphs, self.group, tol=self.tol, num_circle=self.num_circle)
        return frame_average(lambda p: self.backbone(p, *args, **kwargs), pos, batch, self.output_kinds,
                             frames=frames)  # fmt: skip
