"""DDIM sampling for E(3)-equivariant coordinates (Song, Meng & Ermon 2021), zero-CoM noise."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError
from geodiff.schedulers.base import GeodiffSchedulerOutput
from geodiff.schedulers.e3_common import E3GaussianMixin, PredictionType
from geodiff.schedulers.noise_schedules import BetaSchedule

__all__ = ["E3DDIMScheduler"]


class E3DDIMScheduler(E3GaussianMixin, SchedulerMixin, ConfigMixin):
    """DDIM on 3D coordinates: deterministic for ``eta = 0``, DDPM-like for ``eta = 1``.

    Takes the same schedule arguments as :class:`E3DDPMScheduler` (so a model trained with one samples
    with the other: ``E3DDIMScheduler.from_config(ddpm.config)``), plus ``eta``.
    """

    _compatibles = ["E3DDPMScheduler"]

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
        center_of_mass: bool = True,
        eta: float = 0.0,
    ):
        if eta < 0:
            raise GeodiffValueError(f"eta: must be >= 0, got {eta}")
        self._init_gaussian()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        batch: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        return_dict: bool = True,
    ) -> GeodiffSchedulerOutput | tuple:
        """One DDIM step x_t -> x_{t'} (Song et al. 2021, eq. 12)."""
        t, prev_t = self._step_inputs(model_output, timestep, sample, batch)
        eta = self.config.eta if eta is None else eta
        # 1. cumulative signal at t and at the previous timestep t'
        abar_t = self._expand(self._abar(t), sample, batch)
        abar_prev = self._expand(self._abar(prev_t), sample, batch)
        # 2. predicted x0 and the epsilon it implies (both zero-CoM)
        x0, eps = self.convert_model_output(model_output, t, sample, batch, mask)
        # 3. sigma_t(eta) = eta sqrt((1 - abar')/(1 - abar)) sqrt(1 - abar/abar')  (eq. 16)
        sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
        # 4. "direction pointing to x_t" and the new sample (eq. 12)
        direction = (1 - abar_prev - sigma**2).clamp_min(0).sqrt() * eps
        prev_sample = abar_prev.sqrt() * x0 + direction
        if eta > 0:
            noise = self.project(self._randn(sample.shape, generator, sample), batch, mask)
            prev_sample = prev_sample + sigma * noise
        if not return_dict:
            return (prev_sample, x0)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
