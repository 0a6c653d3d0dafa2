"""The rotation group SO(3) and its Lie algebra so(3) (rotation vectors).

All functions act on batched tensors (``[..., 3]`` rotation vectors, ``[..., 3, 3]`` matrices,
``[..., 4]`` quaternions in ``(w, x, y, z)`` order), in float32 or float64, are differentiable and contain no
Python loop over elements.

Numerics (see tests/unit/manifolds):

* ``exp`` is Rodrigues' formula ``R = cos(t) I + sin(t)/t [w]_x + (1 - cos t)/t^2 w w^T`` with
  ``1 - cos t`` written as ``2 sin^2(t/2)`` (no cancellation) and Taylor series below ``t = 1e-3``.
* ``log`` goes through the quaternion (Shepperd's method: the largest of ``4w^2, 4x^2, 4y^2, 4z^2`` is
  taken as pivot), then ``theta = 2 atan2(|q_xyz|, q_w)``. No ``acos`` is involved, so the angle is
  well-conditioned near 0 and near pi, where the antisymmetric part of ``R`` vanishes.

The IGSO(3) distribution lives in :mod:`geodiff.manifolds.igso3` and is re-exported here.
"""

from __future__ import annotations

import torch

from geodiff.errors import check_finite, check_shape

__all__ = [
    "hat",
    "vee",
    "exp",
    "log",
    "angle",
    "geodesic_distance",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "random_rotation",
    "igso3_density",
    "igso3_angle_density",
    "igso3_score",
    "igso3_sample",
    "igso3_sample_angle",
]

_SMALL_ANGLE = 1e-3
_CHUNK = 1 << 16  # elements per block in the no-grad CPU kernels


def hat(v: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix ``[v]_x`` (``[..., 3]`` -> ``[..., 3, 3]``) with ``[v]_x u = v x u``."""
    check_shape("v", v, (3,))
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).unflatten(-1, (3, 3))


def vee(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat` (``[..., 3, 3]`` -> ``[..., 3]``), using the antisymmetric part of ``m``."""
    check_shape("m", m, (3, 3))
    return 0.5 * torch.stack(
        (m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), dim=-1
    )


def _rodrigues_basis(dtype, device, with_translation: bool = False) -> torch.Tensor:
    """Constant 0/1 matrix mapping Rodrigues features to the flattened 3x3 (or 4x4) matrix.

    Features: ``[c, ax, ay, az, bxx, bxy, bxz, byy, byz, bzz]`` (+ ``[tx, ty, tz, 1]`` for poses), so that
    ``R = c I + a [w]_x + b w w^T``. One GEMM writes the interleaved output in a single pass, which is
    several times faster than stacking nine strided columns on CPU.
    """
    key = (dtype, str(device), with_translation)
    basis = _BASIS_CACHE.get(key)
    if basis is None:
        width = 16 if with_translation else 9
        row = 4 if with_translation else 3
        basis = torch.zeros(14 if with_translation else 10, width, dtype=dtype, device=device)

        def at(i, j):
            return i * row + j

        for i in range(3):
            basis[0, at(i, i)] = 1.0
        # a [w]_x = a [[0, -z, y], [z, 0, -x], [-y, x, 0]]
        basis[1, at(2, 1)], basis[1, at(1, 2)] = 1.0, -1.0
        basis[2, at(0, 2)], basis[2, at(2, 0)] = 1.0, -1.0
        basis[3, at(1, 0)], basis[3, at(0, 1)] = 1.0, -1.0
        for f, (i, j) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)), start=4):
            basis[f, at(i, j)] = basis[f, at(j, i)] = 1.0
        if with_translation:
            for k in range(3):
                basis[10 + k, at(k, 3)] = 1.0
            basis[13, 15] = 1.0
        _BASIS_CACHE[key] = basis
    return basis


_BASIS_CACHE: dict = {}


def _rodrigues_features(w: torch.Tensor):
    """Features of ``exp(w)`` for ``w`` ``[n, 3]``, plus ``a = sin t / t``, ``b = (1 - cos t)/t^2``,
    ``theta^2`` and the small-angle mask (reused by the SE(3) maps)."""
    x, y, z = w.unbind(-1)
    theta2 = x * x + y * y + z * z
    small = theta2 < _SMALL_ANGLE**2
    any_small = bool(small.any())
    # sqrt of a safe value: d sqrt / d x is infinite at 0 and would turn the masked branch's zero into NaN
    t = (torch.where(small, torch.ones_like(theta2), theta2) if any_small else theta2).sqrt()
    half_sin = torch.sin(0.5 * t)
    a = torch.sin(t) / t
    b = 2.0 * half_sin * half_sin / (t * t)  # (1 - cos t) / t^2 without cancellation
    if any_small:  # Taylor series, evaluated only when some angle is below _SMALL_ANGLE
        a = torch.where(small, 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0, a)
        b = torch.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0, b)
    c = 1.0 - b * theta2  # cos t
    bx, by = b * x, b * y
    feats = [c, a * x, a * y, a * z, bx * x, bx * y, bx * z, by * y, by * z, b * z * z]
    return feats, a, b, theta2, small


def _exp_features_inplace(w: torch.Tensor, feats: torch.Tensor) -> None:
    """No-autograd twin of :func:`_rodrigues_features`: writes the 10 feature rows into ``feats``
    ``[>=10, n]`` with in-place ops and no large temporaries (about 2x faster on CPU)."""
    x, y, z = w.unbind(-1)
    theta2 = x * x
    theta2.addcmul_(y, y).addcmul_(z, z)
    small = theta2 < _SMALL_ANGLE**2
    any_small = bool(small.any())
    t = (torch.where(small, torch.ones_like(theta2), theta2) if any_small else theta2).sqrt()
    a = torch.sin(t).div_(t)
    b = torch.sin(t.mul_(0.5))  # t is not needed after this
    b.mul_(b).mul_(2.0).div_(t.mul_(t).mul_(4.0))  # 2 sin^2(t/2) / t^2
    if any_small:
        s2 = theta2[small]
        a[small] = 1.0 - s2 / 6.0 + s2 * s2 / 120.0
        b[small] = 0.5 - s2 / 24.0 + s2 * s2 / 720.0
    torch.mul(b, theta2, out=feats[0]).neg_().add_(1.0)
    torch.mul(a, x, out=feats[1])
    torch.mul(a, y, out=feats[2])
    torch.mul(a, z, out=feats[3])
    bx = torch.mul(b, x, out=a)  # reuse a's storage
    torch.mul(bx, x, out=feats[4])
    torch.mul(bx, y, out=feats[5])
    torch.mul(bx, z, out=feats[6])
    by = torch.mul(b, y, out=theta2)
    torch.mul(by, y, out=feats[7])
    torch.mul(by, z, out=feats[8])
    torch.mul(b.mul_(z), z, out=feats[9])


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def exp(v: torch.Tensor) -> torch.Tensor:
    """Exponential map so(3) -> SO(3): rotation vector ``[..., 3]`` -> rotation matrix ``[..., 3, 3]``."""
    check_shape("v", v, (3,))
    check_finite("v", v)
    lead = v.shape[:-1]
    flat = v.reshape(-1, 3)
    basis = _rodrigues_basis(v.dtype, v.device)
    if _needs_grad(v):
        feats, *_ = _rodrigues_features(flat)
        return (torch.stack(feats, 0).T @ basis).view(*lead, 3, 3)
    n = flat.shape[0]
    out = torch.empty(n, 9, dtype=v.dtype, device=v.device)
    # cache-sized chunks: the temporaries stay in L2 and come from the allocator's free lists
    chunk = _CHUNK if v.device.type == "cpu" else max(n, 1)
    feats = torch.empty(10, min(chunk, n), dtype=v.dtype, device=v.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        f = feats[:, : stop - start]
        _exp_features_inplace(flat[start:stop], f)
        torch.mm(f.T, basis, out=out[start:stop])
    return out.view(*lead, 3, 3)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` -> unit quaternion ``[..., 4]`` ``(w, x, y, z)`` with ``w >= 0``."""
    check_shape("R", r, (3, 3))
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # 4w^2, 4x^2, 4y^2, 4z^2 (up to round-off); the largest is >= 1 and is the pivot.
    d = torch.stack(
        (1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22), dim=-1
    )
    s21, s02, s10 = r21 - r12, r02 - r20, r10 - r01
    p10, p20, p21 = r10 + r01, r20 + r02, r21 + r12
    cand = torch.stack(
        (
            torch.stack((d[..., 0], s21, s02, s10), -1),
            torch.stack((s21, d[..., 1], p10, p20), -1),
            torch.stack((s02, p10, d[..., 2], p21), -1),
            torch.stack((s10, p20, p21, d[..., 3]), -1),
        ),
        dim=-2,
    )  # [..., 4 candidates, 4 components]; candidate k = q * 4 q_k
    # clamp keeps the unused candidates finite (and their gradients zero); the pivot is >= 1.
    cand = cand / (2.0 * d.clamp_min(1e-12).sqrt()).unsqueeze(-1)
    idx = d.argmax(dim=-1, keepdim=True)
    q = torch.take_along_dim(cand, idx.unsqueeze(-1).expand(*idx.shape, 4), dim=-2).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)  # the pivot component is >= 1/2, so the norm is never 0
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternion ``[..., 4]`` ``(w, x, y, z)`` (normalised here) -> rotation matrix ``[..., 3, 3]``."""
    check_shape("q", q, (4,))
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        (
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ),
        dim=-1,
    ).unflatten(-1, (3, 3))  # fmt: skip


def _quaternion_log(q: torch.Tensor) -> torch.Tensor:
    """Rotation vector of a unit quaternion with ``w >= 0``: ``2 atan2(|v|, w) v/|v|``."""
    w, v = q[..., 0], q[..., 1:]
    n2 = (v * v).sum(-1)
    small = n2 < _SMALL_ANGLE**2
    n_safe = torch.where(small, torch.ones_like(n2), n2).sqrt()
    # series of 2 atan(n/w)/n for small n (w is then ~1): 2/w (1 - n^2/(3 w^2) + n^4/(5 w^4))
    r2 = n2 / (w * w)
    series = 2.0 / w * (1.0 - r2 / 3.0 + r2 * r2 / 5.0)
    factor = torch.where(small, series, 2.0 * torch.atan2(n_safe, w) / n_safe)
    return factor.unsqueeze(-1) * v


def log(r: torch.Tensor) -> torch.Tensor:
    """Logarithm SO(3) -> so(3): rotation matrix ``[..., 3, 3]`` -> rotation vector ``[..., 3]``.

    The angle is in ``[0, pi]``; at exactly pi either of the two valid axes may be returned.
    """
    check_shape("R", r, (3, 3))
    check_finite("R", r)
    return _quaternion_log(matrix_to_quaternion(r))


def angle(r: torch.Tensor) -> torch.Tensor:
    """Rotation angle in ``[0, pi]`` of ``[..., 3, 3]`` matrices (well-conditioned near 0 and pi)."""
    q = matrix_to_quaternion(r)
    return 2.0 * torch.atan2(q[..., 1:].norm(dim=-1), q[..., 0])


def geodesic_distance(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle of ``r1^T r2`` (radians): the geodesic distance on SO(3)."""
    return angle(r1.transpose(-1, -2) @ r2)


def random_rotation(
    shape: tuple[int, ...] | torch.Size = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotations ``[*shape, 3, 3]`` drawn uniformly (Haar measure) via normalised Gaussian quaternions."""
    q = torch.randn((*tuple(shape), 4), generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


# IGSO(3) is defined in its own module; imported last to avoid a cycle (igso3 uses exp/hat).
from geodiff.manifolds.igso3 import (  # noqa: E402
    igso3_angle_density,
    igso3_density,
    igso3_sample,
    igso3_sample_angle,
    igso3_score,
)
