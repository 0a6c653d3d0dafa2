"""Flow matching on SE(3) as SO(3) x R^3 geodesics (FrameFlow, Yim et al. 2023; FoldFlow, Bose et al. 2024),
for poses ``H = [[R, x], [0, 1]]`` ``[..., 4, 4]``.

With ``s`` the noise level (``s = 1``: a draw ``(R_n, x_n)`` from the prior; ``s = 0``: the data pose)::

    R_s = R_data exp(s log(R_data^T R_n))        (the geodesic from R_data to R_n, a fraction s along it)
    x_s = (1 - s) x_data + s x_n

The prior is uniform on SO(3) (``rotation_prior="uniform"``) or IGSO(3) of scale ``prior_sigma_r`` around the
identity (``"igso3"``: a registration problem whose rotations are not arbitrary), and N(0, prior_sigma_t^2)
translations. The model predicts the clean pose (``prediction_type="sample"``, the registration surrogate's
output); an Euler step from ``s`` to ``s'`` moves a fraction ``(s - s') / s`` of the way along the geodesic to
that prediction (``R_s' = R_s exp(((s - s') / s) log(R_s^T R_hat))``, and the same straight-line fraction for
the translation), which reaches the prediction exactly at ``s' = 0``. Training timesteps ``t`` stand for
``s = (t + 1) / T``. Poses never leave SE(3): every update is a rotation times an exponential.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError, check_shape
from geodiff.manifolds import se3, so3
from geodiff.schedulers.base import GeodiffSchedulerOutput, TimestepMixin, flow_timesteps
from geodiff.schedulers.noise_schedules import check_timesteps

__all__ = ["SE3FlowMatchScheduler"]


class SE3FlowMatchScheduler(TimestepMixin, SchedulerMixin, ConfigMixin):
    """Geodesic flow matching on SO(3) x R^3 (see the module docstring).

    Args:
        num_train_timesteps: T, the resolution of the noise-level grid (``s = (t + 1) / T``).
        rotation_prior: ``uniform`` (Haar) or ``igso3`` (around the identity, scale ``prior_sigma_r``).
        prior_sigma_r: IGSO(3) scale of the ``igso3`` prior (radians).
        prior_sigma_t: standard deviation of the prior's translations (data units).
        prediction_type: ``sample`` (the model returns the clean pose).
        time_shift: grid shift (1 = uniform in ``s``; > 1 spends more steps near the noise).
    """

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000,
                 rotation_prior: Literal["uniform", "igso3"] = "uniform", prior_sigma_r: float = 1.0,
                 prior_sigma_t: float = 1.0,
                 prediction_type: Literal["sample"] = "sample", time_shift: float = 1.0):  # fmt: skip
        check_timesteps(num_train_timesteps)
        if rotation_prior not in ("uniform", "igso3"):
            raise GeodiffValueError(f"rotation_prior: expected uniform or igso3, got {rotation_prior!r}")
        if not prior_sigma_r > 0 or not prior_sigma_t > 0:
            raise GeodiffValueError(
                f"prior_sigma_r/prior_sigma_t: must be > 0, got {prior_sigma_r}, {prior_sigma_t}"
            )
        if prediction_type != "sample":
            raise GeodiffValueError(
                f"prediction_type: expected sample (the clean pose), got {prediction_type!r}"
            )
        if not time_shift > 0:
            raise GeodiffValueError(f"time_shift: must be > 0, got {time_shift}")
        T = num_train_timesteps
        #: noise level of every training timestep, float64 [T]
        self.sigmas = torch.arange(1, T + 1, dtype=torch.float64) / T
        self.alphas_cumprod = (1 - self.sigmas) ** 2 / ((1 - self.sigmas) ** 2 + self.sigmas**2)  # same SNR
        self._init_timesteps()

    # ------------------------------------------------------------------------------------------ helpers
    def _check_pose(self, name: str, h: torch.Tensor) -> None:
        self._check_sample(name, h)
        check_shape(name, h, (4, 4))

    def _per_pose(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Scalar or per-pose values broadcast to ``like.shape[:-2] + (1,)``."""
        lead = like.shape[:-2]
        values = values.to(device=like.device, dtype=like.dtype)
        if values.dim() == 0:
            return values.expand(*lead, 1)
        if not lead or values.shape[0] != lead[0]:
            n = lead[0] if lead else 1
            raise GeodiffValueError(f"timesteps: expected a scalar or {n} values, got {values.shape[0]}")
        return values.view(-1, *([1] * (len(lead) - 1)), 1).expand(*lead, 1)

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        sig = self.sigmas.to(t.device)
        return torch.where(t >= 0, sig[t.clamp_min(0)], torch.zeros((), dtype=sig.dtype, device=t.device))

    @staticmethod
    def _towards(h: torch.Tensor, target: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        """The pose a fraction ``frac`` [..., 1] of the way from ``h`` to ``target`` along the SO(3) x R^3
        geodesic."""
        r, x = se3.to_rt(h)
        r_t, x_t = se3.to_rt(target)
        w = so3.log(r.transpose(-1, -2) @ r_t)  # the rotation from r to r_t, in r's frame
        return se3.from_rt(r @ so3.exp(frac * w), x + frac * (x_t - x))

    # ---------------------------------------------------------------------------------- the path
    def sample_prior(self, shape: tuple[int, ...] | torch.Size = (), generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:  # fmt: skip
        """Poses ``[*shape, 4, 4]`` from the prior."""
        c = self.config
        like = torch.empty(0, dtype=dtype, device=device)
        if c.rotation_prior == "uniform":
            r = so3.quaternion_to_matrix(self._randn((*tuple(shape), 4), generator, like))
        else:
            w = so3.igso3_sample(c.prior_sigma_r, tuple(shape), generator, torch.float64).to(like)
            r = so3.exp(w)
        return se3.from_rt(r, c.prior_sigma_t * self._randn((*tuple(shape), 3), generator, like))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor | None, timesteps,
                  generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """The pose a fraction ``s`` of the way from the data pose to ``noise`` (a prior draw, drawn here
        when None) along the geodesic."""
        self._check_pose("original_samples", original_samples)
        if noise is None:
            noise = self.sample_prior(original_samples.shape[:-2], generator, original_samples.dtype,
                                      original_samples.device)  # fmt: skip
        self._check_pose("noise", noise)
        if noise.shape != original_samples.shape:
            raise GeodiffValueError(
                f"noise: shape {list(noise.shape)} differs from the data's {list(original_samples.shape)}"
            )
        s = self._per_pose(self._sigma(self._as_timesteps(timesteps, "timesteps")), original_samples)
        return self._towards(original_samples, noise, s)

    # ---------------------------------------------------------------------------------- sampling
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None,
                      timestep_spacing: str = "trailing") -> None:  # fmt: skip
        """``num_inference_steps`` intervals from ``s = 1`` to data, uniform in ``s`` then shifted by
        ``time_shift`` (``timestep_spacing`` is accepted for interface compatibility and ignored)."""
        c = self.config
        ts, self._prev = flow_timesteps(num_inference_steps, c.num_train_timesteps, c.time_shift)
        self.num_inference_steps = len(ts)
        self.timesteps = ts.to(device) if device is not None else ts

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | None = None,
             return_dict: bool = True) -> GeodiffSchedulerOutput | tuple:  # fmt: skip
        """One Euler step along the geodesic to the predicted clean pose (deterministic)."""
        self._check_pose("model_output", model_output)
        self._check_pose("sample", sample)
        t = self._as_timesteps(timestep)
        prev_t = self._prev.to(t.device)[t]
        s, s_next = self._per_pose(self._sigma(t), sample), self._per_pose(self._sigma(prev_t), sample)
        prev_sample = self._towards(sample, model_output, (s - s_next) / s)
        if not return_dict:
            return (prev_sample, model_output)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=model_output)
