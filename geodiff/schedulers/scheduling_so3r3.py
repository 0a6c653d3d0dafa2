"""SO(3) x R^3 diffusion of rigid frames in the form of FrameDiff (Yim et al., ICML 2023).

Frames are ``[..., 4, 4]`` poses ``[[R, x], [0, 1]]``. The two parts diffuse independently:

* rotations: Brownian motion on SO(3), ``R_t = R_0 exp(nu)`` with ``nu ~ IGSO(3)(sigma_t)`` and the
  logarithmic schedule ``sigma(tau) = log(tau e^sigma_max + (1 - tau) e^sigma_min)`` (or linear),
  ``tau = (t+1)/T``. Reverse: a geodesic random walk, ``R_t' = R_t exp(d score + sqrt(d) z)`` with
  ``d = sigma_t^2 - sigma_t'^2`` and
  the IGSO(3) score at ``log(R0_hat^T R_t)``, the Euler-Maruyama step of the reverse SDE in "time" sigma^2.
* translations: a VP/DDPM process on ``translation_scale * x`` (FrameDiff scales Angstrom by 0.1) with the
  DDPM posterior mean and variance in reverse.

The model predicts the clean frames (``H0_hat``); the final step returns them (FrameDiff's last step).
The prior is uniform rotations and standard-normal (scaled) translations.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError, check_shape
from geodiff.manifolds import se3, so3
from geodiff.manifolds.igso3 import IGSO3AngleSampler, igso3_score
from geodiff.schedulers.base import GeodiffSchedulerOutput, TimestepMixin
from geodiff.schedulers.noise_schedules import BetaSchedule, check_timesteps

__all__ = ["SO3R3DiffusionScheduler"]


class SO3R3DiffusionScheduler(TimestepMixin, SchedulerMixin, ConfigMixin):
    """IGSO(3) rotations x VP translations (FrameDiff).

    Args:
        num_train_timesteps: T.
        min_sigma, max_sigma: IGSO(3) sigma at ``tau -> 0`` and ``tau = 1`` (FrameDiff: 0.1, 1.5).
        rotation_schedule: ``logarithmic`` (FrameDiff) or ``linear`` in sigma.
        beta_schedule, beta_start, beta_end, cosine_s, power, nu: translation schedule (FrameDiff's VP SDE
            with beta from 0.1 to 20 is ``linear`` 1e-4 .. 2e-2 at T = 1000).
        translation_scale: multiply translations by this before diffusing (FrameDiff: 0.1 for Angstrom).
        noise_scale: multiplier of the reverse-step noise (1 = the SDE; < 1 trades diversity for quality).
        igso3_grid_size: grid of the inverse-CDF tables of the IGSO(3) angle.
    """

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        min_sigma: float = 0.1,
        max_sigma: float = 1.5,
        rotation_schedule: Literal["logarithmic", "linear"] = "logarithmic",
        beta_schedule: BetaSchedule = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        cosine_s: float = 0.008,
        power: float = 2.0,
        nu: float = 1.0,
        translation_scale: float = 1.0,
        noise_scale: float = 1.0,
        igso3_grid_size: int = 1024,
    ):
        if not 0 < min_sigma < max_sigma:
            raise GeodiffValueError(f"min_sigma/max_sigma: need 0 < min < max, got {min_sigma}, {max_sigma}")
        if translation_scale <= 0:
            raise GeodiffValueError(f"translation_scale: must be > 0, got {translation_scale}")
        check_timesteps(num_train_timesteps)
        tau = torch.arange(1, num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        if rotation_schedule == "logarithmic":
            self.sigmas = torch.log(tau * math.exp(max_sigma) + (1 - tau) * math.exp(min_sigma))
        elif rotation_schedule == "linear":
            self.sigmas = min_sigma + tau * (max_sigma - min_sigma)
        else:
            raise GeodiffValueError(
                f"rotation_schedule: expected logarithmic or linear, got {rotation_schedule!r}"
            )
        self._angle_sampler: IGSO3AngleSampler | None = None
        self._init_schedule()

    @property
    def angle_sampler(self) -> IGSO3AngleSampler:
        """Inverse-CDF tables for every sigma level, built on first use."""
        if self._angle_sampler is None:
            self._angle_sampler = IGSO3AngleSampler(self.sigmas, self.config.igso3_grid_size)
        return self._angle_sampler

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        sig = self.sigmas.to(t.device)
        return torch.where(t >= 0, sig[t.clamp_min(0)], torch.zeros((), dtype=sig.dtype, device=t.device))

    def _per_frame(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Broadcast scalar or per-sample (``like.shape[0]``) values to ``like.shape[:-2]``."""
        lead = like.shape[:-2]
        values = values.to(like.device)
        if values.dim() == 0:
            return values.expand(lead)
        if not lead or values.shape[0] != lead[0]:
            n = lead[0] if lead else 1
            raise GeodiffValueError(f"timesteps: expected a scalar or {n} values, got {values.shape[0]}")
        return values.view(-1, *([1] * (len(lead) - 1))).expand(lead)

    def _check_pose(self, name: str, h: torch.Tensor) -> None:
        self._check_sample(name, h)
        check_shape(name, h, (4, 4))

    def _random_axes_angles(self, t_frames: torch.Tensor, generator, like: torch.Tensor) -> torch.Tensor:
        angle = self.angle_sampler.sample(t_frames.cpu(), generator, torch.float64)
        axis = self._randn((*t_frames.shape, 3), generator, like.to(torch.float64))
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        return (angle.to(axis.device).unsqueeze(-1) * axis).to(like.dtype)

    def sample_prior(
        self,
        shape: tuple[int, ...] | torch.Size = (),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Frames ``[*shape, 4, 4]``: uniform rotations, N(0, I) / translation_scale translations."""
        like = torch.empty(0, dtype=dtype, device=device)
        q = self._randn((*tuple(shape), 4), generator, like)
        x = self._randn((*tuple(shape), 3), generator, like) / self.config.translation_scale
        return se3.from_rt(so3.quaternion_to_matrix(q), x)

    def add_noise(
        self,
        original_samples: torch.Tensor,
        timesteps,
        generator: torch.Generator | None = None,
        rotation_noise: torch.Tensor | None = None,
        translation_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Noisy frames H_t: ``R_0 exp(nu)`` with ``nu ~ IGSO3(sigma_t)`` (rotation vectors, drawn when not
        given) and ``(sqrt(abar) s x0 + sqrt(1 - abar) eps) / s`` with ``eps ~ N(0, I)``."""
        self._check_pose("original_samples", original_samples)
        t = self._per_frame(self._as_timesteps(timesteps, "timesteps"), original_samples)
        r0, x0 = se3.to_rt(original_samples)
        if rotation_noise is None:
            rotation_noise = self._random_axes_angles(t, generator, original_samples)
        if translation_noise is None:
            translation_noise = self._randn(x0.shape, generator, x0)
        self._check_sample("rotation_noise", rotation_noise)
        self._check_sample("translation_noise", translation_noise)
        abar = self._abar(t).to(x0.dtype).unsqueeze(-1)
        s = self.config.translation_scale
        x_t = (abar.sqrt() * s * x0 + (1 - abar).sqrt() * translation_noise) / s
        return se3.from_rt(r0 @ so3.exp(rotation_noise), x_t)

    def rotation_score(
        self, sample: torch.Tensor, pred_original_sample: torch.Tensor, timesteps
    ) -> torch.Tensor:
        """IGSO(3) score (rotation vector, body frame at R_t) of R_t given R_0: the training target."""
        t = self._per_frame(self._as_timesteps(timesteps, "timesteps"), sample)
        rel = so3.log(pred_original_sample[..., :3, :3].transpose(-1, -2) @ sample[..., :3, :3])
        return igso3_score(rel, self._sigma(t))

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> GeodiffSchedulerOutput | tuple:
        """One reverse step from the model's clean frames ``H0_hat``."""
        self._check_pose("model_output", model_output)
        self._check_pose("sample", sample)
        t = self._per_frame(self._as_timesteps(timestep), sample)
        prev_t = self._prev.to(t.device)[t]
        h0 = model_output
        r_t, x_t = se3.to_rt(sample)
        r0, x0 = se3.to_rt(h0)
        # 1. rotation: geodesic random walk with the IGSO(3) score toward R0_hat
        sig_t, sig_prev = self._sigma(t), self._sigma(prev_t)
        d = (sig_t**2 - sig_prev**2).to(sample.dtype).unsqueeze(-1)
        score = igso3_score(so3.log(r0.transpose(-1, -2) @ r_t), sig_t)
        z = self._randn((*sample.shape[:-2], 3), generator, sample)
        r_prev = r_t @ so3.exp(d * score + self.config.noise_scale * d.sqrt() * z)
        # 2. translation: DDPM posterior q(x_t' | x_t, x0_hat) in scaled units
        s = self.config.translation_scale
        c0, ct, var = self._posterior(t, prev_t, lambda v: v.to(sample.dtype).unsqueeze(-1))
        z_x = self._randn(x_t.shape, generator, x_t)
        x_prev = (c0 * s * x0 + ct * s * x_t + self.config.noise_scale * var.sqrt() * z_x) / s
        # 3. the final step (t' = -1) returns the model's clean frames
        prev_sample = se3.from_rt(r_prev, x_prev)
        final = (prev_t < 0).view(*prev_t.shape, 1, 1)
        prev_sample = torch.where(final, h0, prev_sample)
        if not return_dict:
            return (prev_sample, h0)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=h0)
