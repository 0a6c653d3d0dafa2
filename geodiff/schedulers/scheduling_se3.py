"""SE(3) diffusion in the Lie algebra, as in SE(3) diffusion registration (Jiang et al., NeurIPS 2023).

Poses ``H`` are ``[..., 4, 4]``; twists are ``(omega, v)``. Forward process (their eqs. for the "SE(3)
diffusion" of the relative pose): the clean mean shrinks from ``H_0`` toward the identity along the
one-parameter subgroup through ``log H_0``, and noise multiplies on the left::

    mean_t = exp(sqrt(abar_t) log H_0)
    H_t    = exp(xi) mean_t,   xi = sqrt(1 - abar_t) [s_r, s_r, s_r, s_t, s_t, s_t] * N(0, I_6)

so ``log H_t ~= sqrt(abar_t) log H_0 + sqrt(1 - abar_t) s * eps`` and the prior at ``t = T`` is
``exp(s * eps)`` around the identity. Reverse step (DDPM posterior in the algebra): with ``H0_hat`` from the
model,

    H_t' = exp(sigma_post s * z) exp(g0 log H0_hat + g1 log H_t)

where ``g0 = sqrt(abar') beta / (1 - abar)`` and ``g1 = sqrt(alpha) (1 - abar') / (1 - abar)`` are the DDPM
posterior-mean coefficients between ``t`` and ``t'`` and ``sigma_post^2 = beta (1 - abar') / (1 - abar)``.
The model predicts either ``H0_hat`` itself (``prediction_type="sample"``) or the correcting transform
``dH`` with ``H0_hat = dH H_t`` (``"left_correction"``, the paper's surrogate registration network).
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError, check_shape
from geodiff.manifolds import se3
from geodiff.schedulers.base import GeodiffSchedulerOutput, TimestepMixin
from geodiff.schedulers.noise_schedules import BetaSchedule

__all__ = ["SE3DiffusionScheduler"]


class SE3DiffusionScheduler(TimestepMixin, SchedulerMixin, ConfigMixin):
    """Lie-algebra diffusion on SE(3) poses (registration paper's form).

    Args:
        num_train_timesteps: T (paper: 200 for training; 5 steps at test time via ``set_timesteps(5)``).
        beta_schedule, beta_start, beta_end, cosine_s, power, nu: schedule of abar (paper: cosine, s=0.008).
        sigma_r: noise scale of the rotation components (radians; paper: 0.05).
        sigma_t: noise scale of the translation components (data units; paper: 0.03).
        prediction_type: ``sample`` (model returns H0_hat) or ``left_correction`` (model returns dH).
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 200,
        beta_schedule: BetaSchedule = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        cosine_s: float = 0.008,
        power: float = 2.0,
        nu: float = 1.0,
        sigma_r: float = 0.05,
        sigma_t: float = 0.03,
        prediction_type: Literal["sample", "left_correction"] = "sample",
    ):
        if sigma_r <= 0 or sigma_t <= 0:
            raise GeodiffValueError(f"sigma_r/sigma_t: must be > 0, got {sigma_r}, {sigma_t}")
        if prediction_type not in ("sample", "left_correction"):
            raise GeodiffValueError(
                f"prediction_type: expected sample or left_correction, got {prediction_type!r}"
            )
        self._init_schedule()

    def noise_scales(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """``[s_r, s_r, s_r, s_t, s_t, s_t]``."""
        c = self.config
        return torch.tensor([c.sigma_r] * 3 + [c.sigma_t] * 3, dtype=dtype, device=device)

    def _check_pose(self, name: str, h: torch.Tensor) -> None:
        self._check_sample(name, h)
        check_shape(name, h, (4, 4))

    def _per_pose(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Scalar or per-pose values broadcast to ``like.shape[:-2] + (1,)`` (to scale twists)."""
        abar = values.to(like.dtype)
        lead = like.shape[:-2]
        if abar.dim() == 0:
            return abar.expand(*lead, 1)
        if not lead or abar.shape[0] != lead[0]:
            n = lead[0] if lead else 1
            raise GeodiffValueError(f"timesteps: expected a scalar or {n} values, got {abar.shape[0]}")
        return abar.view(-1, *([1] * (len(lead) - 1)), 1).expand(*lead, 1)

    def sample_prior(
        self,
        shape: tuple[int, ...] | torch.Size = (),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        noise: bool = True,
    ) -> torch.Tensor:
        """Poses ``[*shape, 4, 4]`` from the prior ``exp(s * eps)``; ``noise=False`` gives the identity
        (the registration paper starts its reverse process there)."""
        if not noise:
            return se3.identity(shape, dtype, device)
        like = torch.empty(0, dtype=dtype, device=device)
        eps = self._randn((*tuple(shape), 6), generator, like)
        return se3.exp(eps * self.noise_scales(dtype, device))

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor | None,
        timesteps,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """H_t = exp(sqrt(1 - abar) s * noise) exp(sqrt(abar) log H_0); ``noise`` is N(0, I) ``[..., 6]``."""
        self._check_pose("original_samples", original_samples)
        if noise is None:
            noise = self._randn((*original_samples.shape[:-2], 6), generator, original_samples)
        self._check_sample("noise", noise)
        if noise.shape != (*original_samples.shape[:-2], 6):
            raise GeodiffValueError(
                f"noise: expected shape {[*original_samples.shape[:-2], 6]}, got {list(noise.shape)}"
            )
        abar = self._per_pose(self._abar(self._as_timesteps(timesteps, "timesteps")), original_samples)
        mean = se3.exp(abar.sqrt() * se3.log(original_samples))
        xi = (1 - abar).sqrt() * self.noise_scales(noise.dtype, noise.device) * noise
        return se3.exp(xi) @ mean

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> GeodiffSchedulerOutput | tuple:
        """One reverse step H_t -> H_t' from the model's clean pose (or left correction)."""
        self._check_pose("model_output", model_output)
        self._check_pose("sample", sample)
        t = self._as_timesteps(timestep)
        prev_t = self._prev.to(t.device)[t]
        # 1. the clean-pose estimate
        if self.config.prediction_type == "sample":
            h0 = model_output
        else:
            h0 = model_output @ sample
        # 2. DDPM posterior coefficients between t and t', one per pose
        g0, g1, var = self._posterior(t, prev_t, lambda v: self._per_pose(v, sample))
        # 3. posterior mean taken in the Lie algebra: exp(g0 log H0_hat + g1 log H_t)
        mean = se3.exp(g0 * se3.log(h0) + g1 * se3.log(sample))
        # 4. left-multiplied noise with the posterior variance (zero on the final step)
        std = var.sqrt()
        z = self._randn((*sample.shape[:-2], 6), generator, sample)
        prev_sample = se3.exp(std * self.noise_scales(sample.dtype, sample.device) * z) @ mean
        if not return_dict:
            return (prev_sample, h0)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=h0)
