"""Discrete noise schedules: the cumulative signal level ``alphas_cumprod[t]`` for ``t = 0 .. T-1``.

``alphas_cumprod[t]`` (abar_t) is the signal kept after ``t + 1`` forward steps, the diffusers convention;
``abar_{-1} = 1`` is the clean data. All schedules are computed in float64.

* ``linear`` — betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020; GeoTDM).
* ``cosine`` — ``abar(tau) = cos^2(pi/2 (tau + s)/(1 + s)) / cos^2(pi/2 s/(1 + s))`` with betas clipped at
  0.999 (Nichol & Dhariwal 2021; EQGAT-diff and the SE(3) registration paper use ``s = 0.008``).
* ``polynomial`` — EDM's ``abar(tau) = (1 - tau^power)^2`` with the step ratios clipped at 0.001 and the
  precision shift ``abar <- (1 - 2 p) abar + p``, ``p = 1e-4`` (Hoogeboom et al. 2022).
* ``adaptive_cosine`` — MiDi's ``abar(tau) = cos^2(pi/2 (tau^nu + s)/(1 + s))``, normalised at ``tau = 0``;
  ``nu > 1`` keeps a component cleaner for longer (Vignac et al. 2023).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from geodiff.errors import GeodiffValueError

__all__ = ["BetaSchedule", "check_timesteps", "make_alphas_cumprod", "betas_from_alphas_cumprod"]

BetaSchedule = Literal["linear", "cosine", "polynomial", "adaptive_cosine"]


def _from_continuous(abar_fn, num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = abar_fn(tau)
    betas = (1 - abar[1:] / abar[:-1]).clamp(0.0, max_beta)
    return torch.cumprod(1 - betas, dim=0)


MAX_TIMESTEPS = 1_000_000  # far beyond any discretisation in use (EDM 1000, EQGAT-diff 500, GeoTDM 1000)


def check_timesteps(num_timesteps) -> int:
    """``num_timesteps`` when it is an integer in 1 .. 1,000,000 (a bigger one would only exhaust memory:
    checked before any schedule array is made)."""
    if (
        isinstance(num_timesteps, bool)
        or not isinstance(num_timesteps, (int, np.integer))
        or not 1 <= num_timesteps <= MAX_TIMESTEPS
    ):
        raise GeodiffValueError(
            f"num_train_timesteps: must be an integer from 1 to {MAX_TIMESTEPS:,}, got {num_timesteps!r}"
        )
    return num_timesteps


def make_alphas_cumprod(
    schedule: BetaSchedule,
    num_timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 2e-2,
    cosine_s: float = 0.008,
    power: float = 2.0,
    nu: float = 1.0,
    precision: float = 1e-4,
) -> torch.Tensor:
    """``alphas_cumprod`` ``[num_timesteps]`` (float64) for one of the named schedules."""
    check_timesteps(num_timesteps)
    if schedule == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise GeodiffValueError(
                f"beta_start/beta_end: need 0 < start <= end < 1, got {beta_start}, {beta_end}"
            )
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        return torch.cumprod(1 - betas, dim=0)
    if schedule == "cosine":

        def f(tau):
            return torch.cos((tau + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2

        return _from_continuous(lambda tau: f(tau) / f(torch.zeros(())), num_timesteps)
    if schedule == "adaptive_cosine":
        if nu <= 0:
            raise GeodiffValueError(f"nu: must be > 0, got {nu}")

        def g(tau):
            return torch.cos((tau**nu + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2

        return _from_continuous(lambda tau: g(tau) / g(torch.zeros(())), num_timesteps)
    if schedule == "polynomial":
        tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        abar = (1 - tau**power) ** 2
        steps = (abar[1:] / abar[:-1].clamp_min(1e-300)).clamp(0.001, 1.0)
        abar = torch.cumprod(steps, dim=0)
        return (1 - 2 * precision) * abar + precision
    raise GeodiffValueError(
        f"beta_schedule: expected one of linear, cosine, polynomial, adaptive_cosine; got {schedule!r}"
    )


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Per-step betas ``1 - abar_t / abar_{t-1}`` (with ``abar_{-1} = 1``)."""
    prev = torch.cat((alphas_cumprod.new_ones(1), alphas_cumprod[:-1]))
    return 1 - alphas_cumprod / prev
