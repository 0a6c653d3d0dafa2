"""Ancestral DDPM sampling for E(3)-equivariant coordinates (Ho et al. 2020; EDM, Hoogeboom et al. 2022)."""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError
from geodiff.schedulers.base import GeodiffSchedulerOutput
from geodiff.schedulers.e3_common import E3GaussianMixin, PredictionType
from geodiff.schedulers.noise_schedules import BetaSchedule

__all__ = ["E3DDPMScheduler"]


class E3DDPMScheduler(E3GaussianMixin, SchedulerMixin, ConfigMixin):
    """DDPM on node-flattened or padded 3D coordinates with zero-centre-of-mass noise.

    Args:
        num_train_timesteps: T, the number of forward steps (EQGAT-diff: 500, GeoTDM: 1000).
        beta_schedule: ``linear``, ``cosine``, ``polynomial`` (EDM) or ``adaptive_cosine`` (MiDi, with
            exponent ``nu``).
        beta_start, beta_end: endpoints of the ``linear`` schedule.
        cosine_s: offset ``s`` of the cosine schedules.
        power: exponent of the ``polynomial`` schedule.
        nu: exponent of the ``adaptive_cosine`` schedule.
        prediction_type: what the model outputs: ``epsilon``, ``sample`` (x0) or ``v_prediction``.
        variance_type: ``fixed_small`` (posterior variance) or ``fixed_large`` (beta_t).
        center_of_mass: keep every graph in its zero-CoM subspace (translation invariance).
    """

    _compatibles = ["E3DDIMScheduler"]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 500,
        beta_schedule: BetaSchedule = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        cosine_s: float = 0.008,
        power: float = 2.0,
        nu: float = 1.0,
        prediction_type: PredictionType = "epsilon",
        variance_type: Literal["fixed_small", "fixed_large"] = "fixed_small",
        center_of_mass: bool = True,
    ):
        if variance_type not in ("fixed_small", "fixed_large"):
            raise GeodiffValueError(
                f"variance_type: expected fixed_small or fixed_large, got {variance_type!r}"
            )
        self._init_gaussian()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        batch: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> GeodiffSchedulerOutput | tuple:
        """One ancestral step x_t -> x_{t'} (t' = previous timestep, possibly several training steps back)."""
        t, prev_t = self._step_inputs(model_output, timestep, sample, batch)
        # 1. posterior q(x_t' | x_t, x0) between t and t' (Ho et al. eq. 7), per node
        coef_x0, coef_xt, var = self._posterior(t, prev_t, lambda v: self._expand(v, sample, batch))
        # 2. the model's x0 estimate (Ho et al. eq. 15 for epsilon), in the zero-CoM subspace
        x0, _ = self.convert_model_output(model_output, t, sample, batch, mask)
        # 3. posterior mean
        mean = coef_x0 * x0 + coef_xt * self.project(sample, batch, mask)
        # 4. add zero-CoM noise with the posterior (fixed_small) or forward (fixed_large) variance
        if self.config.variance_type == "fixed_large":
            var = self._expand(1 - self._abar(t) / self._abar(prev_t), sample, batch)
        has_noise = self._expand((prev_t >= 0).to(torch.float64), sample, batch)
        noise = self.project(self._randn(sample.shape, generator, sample), batch, mask)
        prev_sample = mean + has_noise * var.sqrt() * noise
        if not return_dict:
            return (prev_sample, x0)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
