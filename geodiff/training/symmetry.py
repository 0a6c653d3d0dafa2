"""Symmetry as a training choice for a backbone that is not equivariant by construction: data augmentation,
and soft equivariance with one regulariser per symmetry type whose strengths are tuned during training.

Soft equivariance (Kim, Lee, Yang and Lee, "Regularizing Towards Soft Equivariance Under Mixed Symmetries",
ICML 2023). The loss gains ``sum_k lambda_k R_k`` with one term per symmetry type ``k`` (rotation, reflection,
translation, permutation). The paper's ``R_k`` is the distance of each EMLP layer's weights to their
projection on the type's equivariant subspace; a graph-attention backbone has no such linear projection, so
geodiff measures the same departure on samples: ``R_k = mean |f(g x) - g f(x)|^2`` for one random ``g`` of
type ``k`` per step (zero exactly when the model is equivariant to the type). The strengths follow the
reference code's automatic adjustment (``AdjustEquiv`` in its training script): all types start at their
configured strength; after a warm-up the smallest ``R_k`` seen so far is tracked per type, and at step
``adjust_at`` every strength is divided by ``(R_k / min_j R_j)^power``. A type the data does not respect
keeps a large residual ``R_k`` and is regularised less: the ratios ``R_k / min_j R_j`` are what the method
"discovers" about each symmetry.

The reference's ``R_k`` is deterministic given the weights; a one-draw sample of it is not, and the minimum
of single draws is biased towards lucky ones: a rotation or a translation drawn close to the identity gives
a near-zero penalty whatever the model, a reflection never does. So the minimum is taken over an exponential
moving average of the draws (``smoothing``, default 0.98: about the last 50 steps), not over the draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from geodiff.errors import GeodiffValueError
from geodiff.testing.equivariance import Transform, mirror

__all__ = ["SYMMETRY_TYPES", "SoftEquivariance", "augment_trajectories", "random_element"]

SYMMETRY_TYPES = ("rotation", "reflection", "translation", "permutation")


def check_types(name: str, types: Sequence[str], allowed: Sequence[str] = SYMMETRY_TYPES) -> list[str]:
    bad = [t for t in types if t not in allowed]
    if bad:
        raise GeodiffValueError(f"{name}: unknown symmetry {bad[0]!r}; expected some of {', '.join(allowed)}")
    return list(types)


def _random_rotation(dim: int, generator, dtype, shape=()) -> torch.Tensor:
    """Uniform rotations ``[*shape, dim, dim]`` (QR of a Gaussian matrix with the sign fixed, det +1)."""
    a = torch.randn(*shape, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.ones(*shape, dim, dtype=torch.float64)
    flip[..., 0] = torch.linalg.det(q).sign()
    return (q * flip.unsqueeze(-2)).to(dtype)


def random_element(kind: str, dim: int, num_nodes: int, generator=None, dtype=torch.float64,
                   translation_std: float = 1.0) -> Transform:  # fmt: skip
    """One random group element of a symmetry type as a :class:`~geodiff.testing.Transform` in ``dim`` D:
    a uniform rotation, a uniform rotation times a mirror, a Gaussian translation, a node permutation."""
    eye, zero = torch.eye(dim, dtype=dtype), torch.zeros(dim, dtype=dtype)
    if kind == "rotation":
        return Transform(_random_rotation(dim, generator, dtype), zero, None)
    if kind == "reflection":
        return Transform(_random_rotation(dim, generator, dtype) @ mirror(dim, dtype), zero, None)
    if kind == "translation":
        shift = translation_std * torch.randn(dim, generator=generator, dtype=torch.float64)
        return Transform(eye, shift.to(dtype), None)
    if kind == "permutation":
        return Transform(eye, zero, torch.randperm(num_nodes, generator=generator))
    raise GeodiffValueError(f"symmetry: unknown type {kind!r}")


def augment_trajectories(batch, symmetries: Sequence[str], generator=None, translation_std: float = 1.0):
    """``batch`` with every system moved by its own random element: a uniform rotation (``rotation``), a
    mirror with probability 1/2 (``reflection``), a Gaussian shift (``translation``); all frames alike.
    Node features and graphs are invariant and stay."""
    x = batch.x
    B, d = batch.num_graphs, x.shape[-1]
    Q = torch.eye(d, dtype=x.dtype, device=x.device).expand(B, d, d)
    if "rotation" in symmetries:
        Q = _random_rotation(d, generator, x.dtype, (B,)).to(x.device)
    if "reflection" in symmetries:
        s = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0).to(x.device, x.dtype)
        Q = Q.clone()
        Q[:, :, 0] = Q[:, :, 0] * s[:, None]
    x = torch.einsum("nfj,nij->nfi", x, Q[batch.batch])
    if "translation" in symmetries:
        t = translation_std * torch.randn(B, d, generator=generator, dtype=torch.float64).to(
            x.device, x.dtype
        )
        x = x + t[batch.batch].unsqueeze(1)
    return replace(batch, x=x)


class SoftEquivariance(torch.nn.Module):
    """The regulariser and its strengths (module docstring). Its state (strengths, minima, whether it has
    adjusted) lives in buffers, so it is saved with Lightning checkpoints and survives a resume.

    Args:
        strengths: initial ``lambda_k`` per symmetry type (types not named are not regularised).
        adjust_at: the training step of the one automatic adjustment (None: keep the strengths fixed).
        warmup: steps before the minima are tracked (the reference waits 50 epochs of its 100).
        power: the exponent of the adjustment (the reference's ``--adjust_exp``).
        translation_std: scale of the random translations (data units).
        smoothing: decay of the moving average whose minimum is tracked (0: the single draws).
    """

    def __init__(self, strengths: dict[str, float], adjust_at: int | None = None, warmup: int = 0,
                 power: float = 1.0, translation_std: float = 1.0, smoothing: float = 0.98):  # fmt: skip
        super().__init__()
        self.types = check_types("soft_equivariance", list(strengths))
        if not self.types or any(float(v) < 0 for v in strengths.values()):
            raise GeodiffValueError(
                f"soft_equivariance: need non-negative strengths per type, got {strengths}"
            )
        self.adjust_at, self.warmup, self.power = adjust_at, int(warmup), float(power)
        self.translation_std = float(translation_std)
        self.register_buffer("strengths", torch.tensor([float(strengths[k]) for k in self.types]))
        if not 0.0 <= float(smoothing) < 1.0:
            raise GeodiffValueError(f"soft_equivariance_smoothing: a decay in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self.register_buffer("penalty_min", torch.full((len(self.types),), float("inf")))
        self.register_buffer("penalty_avg", torch.full((len(self.types),), float("nan")))
        self.register_buffer("adjusted", torch.zeros((), dtype=torch.bool))

    def penalties(self, func: Callable, inputs: Sequence, input_kinds: Sequence, output_kinds: Sequence,
                  dim: int, num_nodes: int, generator=None) -> torch.Tensor:  # fmt: skip
        """``R_k`` per type ``[K]``: ``mean |f(g x) - g f(x)|^2`` over the outputs, for one random ``g`` each
        (inputs are detached: the penalty shapes the function, not its inputs)."""
        inputs = [x.detach() if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]
        base = func(*inputs)
        base = base if isinstance(base, (tuple, list)) else (base,)
        out = []
        for kind in self.types:
            dtype = next(x.dtype for x in inputs if isinstance(x, torch.Tensor) and x.is_floating_point())
            g = random_element(kind, dim, num_nodes, generator, dtype, self.translation_std)
            g = Transform(g.Q.to(inputs[0].device), g.t.to(inputs[0].device),
                          None if g.perm is None else g.perm.to(inputs[0].device))  # fmt: skip
            moved = func(*[g.apply(x, k) for x, k in zip(inputs, input_kinds, strict=True)])
            moved = moved if isinstance(moved, (tuple, list)) else (moved,)
            terms = [
                ((m - g.apply(b, k)) ** 2).mean() for m, b, k in zip(moved, base, output_kinds, strict=True)
            ]
            out.append(torch.stack(terms).sum())
        return torch.stack(out)

    def loss(self, penalties: torch.Tensor) -> torch.Tensor:
        return (self.strengths.to(penalties.dtype) * penalties).sum()

    @torch.no_grad()
    def update(self, step: int, penalties: torch.Tensor) -> bool:
        """Track the minima after the warm-up (until the adjustment); adjust the strengths once at
        ``adjust_at``. True when it adjusted at this step."""
        if not bool(self.adjusted):  # frozen after the adjustment, as the reference
            p = penalties.detach().to(self.penalty_avg.dtype)
            fresh = torch.isnan(self.penalty_avg)
            a = self.smoothing
            self.penalty_avg.copy_(torch.where(fresh, p, a * self.penalty_avg + (1 - a) * p))
            if step >= self.warmup:
                self.penalty_min.copy_(torch.minimum(self.penalty_min, self.penalty_avg))
        if self.adjust_at is None or bool(self.adjusted) or step < self.adjust_at:
            return False
        rglr = self.penalty_min.clamp_min(1e-30)
        if not bool(torch.isfinite(rglr).all()):
            return False
        active = self.strengths > 0
        low = rglr[active].min() if bool(active.any()) else rglr.min()
        self.strengths.div_((rglr / low).pow(self.power))
        self.adjusted.fill_(True)
        return True

    def record(self) -> dict:
        """What the export's run record keeps: strengths, the minima and their ratios (the discovered
        approximation levels)."""
        low = self.penalty_min.clamp_min(1e-30).min()
        return {"types": self.types, "strengths": dict(zip(self.types, self.strengths.tolist(), strict=True)),
                "penalty_min": dict(zip(self.types, self.penalty_min.tolist(), strict=True)),
                "penalty_ratio": dict(zip(self.types, (self.penalty_min / low).tolist(), strict=True)),
                "adjusted": bool(self.adjusted), "adjust_at": self.adjust_at,
                "power": self.power, "smoothing": self.smoothing}  # fmt: skip
