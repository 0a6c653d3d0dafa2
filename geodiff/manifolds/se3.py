"""The rigid-motion group SE(3) and its Lie algebra se(3).

Poses are ``[..., 4, 4]`` homogeneous matrices ``[[R, t], [0, 1]]``; twists are ``[..., 6]`` vectors in the
order ``(omega, v)``: rotation first, then translation. ``exp(omega, v) = [[exp(omega), V(omega) v], [0, 1]]``
with the left Jacobian ``V = I + b [w]_x + c [w]_x^2``, ``b = (1 - cos t)/t^2``, ``c = (t - sin t)/t^3``, and
``V^-1 = I - [w]_x / 2 + d [w]_x^2`` with ``d = 1/t^2 - cot(t/2) / (2t)``, which stays finite at ``t = pi``.
All coefficients use Taylor series below ``t = 1e-3``; the rotation part uses :mod:`geodiff.manifolds.so3`.
"""

from __future__ import annotations

import torch

from geodiff.errors import check_finite, check_shape
from geodiff.manifolds import so3

__all__ = [
    "exp",
    "log",
    "compose",
    "inverse",
    "apply",
    "from_rt",
    "to_rt",
    "left_jacobian",
    "left_jacobian_inverse",
    "identity",
    "random_pose",
]

_SMALL_ANGLE = 1e-3


def _coefficients(omega: torch.Tensor):
    theta2 = (omega * omega).sum(-1)
    small = theta2 < _SMALL_ANGLE**2
    t = torch.where(small, torch.ones_like(theta2), theta2).sqrt()  # safe sqrt: finite gradients at 0
    return theta2, t, small


def _jacobian_from(omega: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    k = so3.hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + b[..., None, None] * k + c[..., None, None] * (k @ k)


def left_jacobian(omega: torch.Tensor) -> torch.Tensor:
    """``V(omega)`` ``[..., 3, 3]``: the left Jacobian of SO(3), mapping ``v`` to the translation of exp."""
    theta2, t, small = _coefficients(omega)
    half = torch.sin(0.5 * t)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2**2 / 720, 2 * half * half / (t * t))
    c = torch.where(small, 1 / 6 - theta2 / 120 + theta2**2 / 5040, (t - torch.sin(t)) / (t * t * t))
    return _jacobian_from(omega, b, c)


def left_jacobian_inverse(omega: torch.Tensor) -> torch.Tensor:
    """``V(omega)^-1`` ``[..., 3, 3]`` (finite for every angle in ``[0, pi]``)."""
    theta2, t, small = _coefficients(omega)
    d = torch.where(
        small,
        1 / 12 + theta2 / 720 + theta2**2 / 30240,
        1 / (t * t) - torch.cos(0.5 * t) / (2 * t * torch.sin(0.5 * t)),
    )
    return _jacobian_from(omega, torch.full_like(d, -0.5), d)


def from_rt(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Assemble ``[..., 4, 4]`` poses from rotations ``[..., 3, 3]`` and translations ``[..., 3]``."""
    check_shape("R", r, (3, 3))
    check_shape("t", t, (3,))
    shape = torch.broadcast_shapes(r.shape[:-2], t.shape[:-1])
    out = torch.zeros((*shape, 4, 4), dtype=r.dtype, device=r.device)
    out[..., :3, :3] = r
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


def to_rt(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``[..., 4, 4]`` poses into rotations ``[..., 3, 3]`` and translations ``[..., 3]``."""
    check_shape("pose", pose, (4, 4))
    return pose[..., :3, :3], pose[..., :3, 3]


def exp(xi: torch.Tensor) -> torch.Tensor:
    """Exponential map se(3) -> SE(3): twist ``[..., 6]`` ``(omega, v)`` -> pose ``[..., 4, 4]``."""
    check_shape("xi", xi, (6,))
    check_finite("xi", xi)
    lead = xi.shape[:-1]
    flat = xi.reshape(-1, 6)
    w, v = flat[:, :3], flat[:, 3:]
    feats, a, b, theta2, small = so3._rodrigues_features(w)
    # V v = v + b (w x v) + c (w x (w x v)),  c = (t - sin t)/t^3 = (1 - a)/t^2
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    c = torch.where(small, 1 / 6 - theta2 / 120 + theta2**2 / 5040, (1 - a) / safe2).unsqueeze(-1)
    wxv = torch.linalg.cross(w, v, dim=-1)
    t = v + b.unsqueeze(-1) * wxv + c * torch.linalg.cross(w, wxv, dim=-1)
    feats = [*feats, *t.unbind(-1), torch.ones_like(theta2)]
    basis = so3._rodrigues_basis(xi.dtype, xi.device, with_translation=True)
    return (torch.stack(feats, 0).T @ basis).view(*lead, 4, 4)


def log(pose: torch.Tensor) -> torch.Tensor:
    """Logarithm SE(3) -> se(3): pose ``[..., 4, 4]`` -> twist ``[..., 6]`` ``(omega, v)``.

    Accurate for rotation angles up to and including pi (quaternion-based rotation log, finite ``V^-1``).
    """
    check_shape("pose", pose, (4, 4))
    check_finite("pose", pose)
    r, t = to_rt(pose)
    omega = so3.log(r)
    theta2, th, small = _coefficients(omega)
    # V^-1 t = t - (w x t)/2 + d (w x (w x t)),  d = 1/t^2 - cot(t/2)/(2t), finite at t = pi
    d = torch.where(
        small,
        1 / 12 + theta2 / 720 + theta2**2 / 30240,
        1 / (th * th) - torch.cos(0.5 * th) / (2 * th * torch.sin(0.5 * th)),
    ).unsqueeze(-1)
    wxt = torch.linalg.cross(omega, t, dim=-1)
    v = t - 0.5 * wxt + d * torch.linalg.cross(omega, wxt, dim=-1)
    return torch.cat((omega, v), dim=-1)


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``[..., 4, 4]`` poses (apply ``b`` first), broadcasting over leading dimensions."""
    check_shape("a", a, (4, 4))
    check_shape("b", b, (4, 4))
    return a @ b


def inverse(pose: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse ``[[R^T, -R^T t], [0, 1]]`` of ``[..., 4, 4]`` poses."""
    r, t = to_rt(pose)
    rt = r.transpose(-1, -2)
    return from_rt(rt, -(rt @ t.unsqueeze(-1)).squeeze(-1))


def apply(pose: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Transform points ``[..., N, 3]`` by poses ``[..., 4, 4]``: ``R p + t``."""
    check_shape("points", points, (3,))
    r, t = to_rt(pose)
    return points @ r.transpose(-1, -2) + t.unsqueeze(-2)


def identity(
    shape: tuple[int, ...] | torch.Size = (),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Identity poses ``[*shape, 4, 4]``."""
    return torch.eye(4, dtype=dtype, device=device).expand(*tuple(shape), 4, 4).clone()


def random_pose(
    shape: tuple[int, ...] | torch.Size = (),
    translation_scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Poses with uniform (Haar) rotations and Gaussian translations of std ``translation_scale``."""
    r = so3.random_rotation(shape, generator, dtype, device)
    t = translation_scale * torch.randn((*tuple(shape), 3), generator=generator, dtype=dtype, device=device)
    return from_rt(r, t)
