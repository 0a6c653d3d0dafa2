"""Conditional flow matching on zero-centre-of-mass coordinates (Lipman et al. 2023; Liu et al. 2023's
rectified flow; the linear path of SemlaFlow and EquiFM).

Path, with ``s`` the noise level (``s = 1``: the prior N(0, I) in the zero-CoM subspace; ``s = 0``: data)::

    x_s = (1 - s) x_data + s eps,        velocity  u = d x_s / d s = eps - x_data

(in the "t from noise to data" convention of the flow-matching papers, ``t = 1 - s`` and ``x_1`` is the
data). Training timesteps ``t = 0 .. T-1`` stand for ``s = (t + 1) / T``, so a denoiser that reads time as
``(t + 1) / T`` (geodiff's) reads the noise level itself. The model predicts ``sample`` (the clean data, as
SemlaFlow's x1 prediction) or ``velocity`` (``eps - x_data``); either gives the other and the noise. (Noise
prediction is not offered: at ``s = 1`` it carries no information about the data.)

Sampling integrates from ``s = 1`` to 0 on any grid of ``n`` steps (``set_timesteps(n)``): ``euler``
(``x_{s'} = (1 - s') x_hat + s' eps_hat``, one model call a step, exact along the straight path the model
predicts) or ``heun`` (second order: each interval takes a second model call at its end, averaging the two
velocities; the last interval, which ends at data, is an Euler step; ``2 n - 1`` calls). ``time_shift`` > 1
moves the grid towards the noise end, ``s' = shift s / (1 + (shift - 1) s)`` (a shift of the log-SNR by
``log shift``, as Stable Diffusion 3).

Everything is kept in each graph's zero-CoM subspace (``center_of_mass=True``), so the path and the
sampler commute with rotations, reflections and translations, as the E(3) DDPM scheduler does.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError
from geodiff.schedulers.base import GeodiffSchedulerOutput, flow_timesteps
from geodiff.schedulers.e3_common import E3GaussianMixin
from geodiff.schedulers.noise_schedules import check_timesteps

__all__ = ["E3FlowMatchScheduler"]

FlowPrediction = Literal["sample", "velocity"]


class E3FlowMatchScheduler(E3GaussianMixin, SchedulerMixin, ConfigMixin):
    """Flow matching on node-flattened or padded 3D coordinates (see the module docstring).

    Args:
        num_train_timesteps: T, the resolution of the noise-level grid (``s = (t + 1) / T``).
        prediction_type: ``sample`` (clean data) or ``velocity`` (``eps - x_data``).
        solver: ``euler`` or ``heun``.
        time_shift: grid shift (1 = uniform in ``s``; > 1 spends more steps near the noise).
        center_of_mass: keep every graph in its zero-CoM subspace.
    """

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, prediction_type: FlowPrediction = "sample",
                 solver: Literal["euler", "heun"] = "euler", time_shift: float = 1.0,
                 center_of_mass: bool = True):  # fmt: skip
        check_timesteps(num_train_timesteps)
        if prediction_type not in ("sample", "velocity"):
            raise GeodiffValueError(f"prediction_type: expected sample or velocity, got {prediction_type!r}")
        if solver not in ("euler", "heun"):
            raise GeodiffValueError(f"solver: expected euler or heun, got {solver!r}")
        if not time_shift > 0:
            raise GeodiffValueError(f"time_shift: must be > 0, got {time_shift}")
        T = num_train_timesteps
        #: noise level of every training timestep, float64 [T]
        self.sigmas = torch.arange(1, T + 1, dtype=torch.float64) / T
        # the VP process with the same signal-to-noise ratio: snr = ((1 - s) / s)^2 (loss weights, plots)
        self.alphas_cumprod = (1 - self.sigmas) ** 2 / ((1 - self.sigmas) ** 2 + self.sigmas**2)
        self.order = 2 if solver == "heun" else 1
        self._heun_state: tuple | None = None
        self._init_timesteps()

    # ---------------------------------------------------------------------------------- the path
    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level at ``t`` with ``s_{-1} = 0`` (data), float64."""
        sig = self.sigmas.to(t.device)
        return torch.where(t >= 0, sig[t.clamp_min(0)], torch.zeros((), dtype=sig.dtype, device=t.device))

    def _coefs(self, timesteps, like, batch):
        s = self._expand(self._sigma(self._as_timesteps(timesteps, "timesteps")), like, batch)
        return 1 - s, s

    def get_velocity(self, sample, noise, timesteps=None, batch=None) -> torch.Tensor:
        """The flow's velocity target ``eps - x_data`` (it does not depend on the time)."""
        return noise - sample

    def training_target(self, original_samples, noise, timesteps, batch=None, mask=None) -> torch.Tensor:
        """What the model should output under ``prediction_type`` for this (x_data, eps, t)."""
        x0 = self.project(original_samples, batch, mask)
        eps = self.project(noise, batch, mask)
        return x0 if self.config.prediction_type == "sample" else eps - x0

    def convert_model_output(self, model_output, timestep, sample, batch=None, mask=None):
        """(x_hat, eps_hat) from the raw model output, both projected to zero CoM."""
        a, s = self._coefs(timestep, sample, batch)
        out = self.project(model_output, batch, mask)
        kind = self.config.prediction_type
        if kind == "sample":
            return out, (sample - a * out) / s
        return sample - s * out, sample + a * out  # u = eps - x: x = x_s - s u, eps = x_s + (1 - s) u

    # ---------------------------------------------------------------------------------- sampling grid
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None,
                      timestep_spacing: str = "trailing") -> None:  # fmt: skip
        """``num_inference_steps`` intervals from ``s = 1`` to data, uniform in ``s`` then shifted by
        ``time_shift`` (``timestep_spacing`` is accepted for interface compatibility and ignored). With
        ``heun`` every timestep but the first appears twice (the second call of the interval before it)."""
        c = self.config
        ts, self._prev = flow_timesteps(num_inference_steps, c.num_train_timesteps, c.time_shift)
        self.num_inference_steps = len(ts)
        if self.config.solver == "heun":
            ts = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])
        self.timesteps = ts.to(device) if device is not None else ts
        self._heun_state = None

    # ---------------------------------------------------------------------------------- one step
    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor,
             batch: torch.Tensor | None = None, mask: torch.Tensor | None = None,
             generator: torch.Generator | None = None,
             return_dict: bool = True) -> GeodiffSchedulerOutput | tuple:  # fmt: skip
        """One solver step towards data (deterministic: ``generator`` is accepted and unused). With ``heun``
        the calls alternate: the first of an interval returns the Euler proposal at its end, the second (at
        that end) returns the corrected sample."""
        t, prev_t = self._step_inputs(model_output, timestep, sample, batch)
        x0, eps = self.convert_model_output(model_output, t, sample, batch, mask)
        x = self.project(sample, batch, mask)
        velocity = eps - x0
        if self._heun_state is not None:  # the second call of a Heun interval, at its end
            x_start, v_start, s_start = self._heun_state
            self._heun_state = None
            s_end = self._expand(self._sigma(t), x, batch)
            prev_sample = x_start + (s_end - s_start) * 0.5 * (v_start + velocity)
        else:
            s_now = self._expand(self._sigma(t), x, batch)
            s_next = self._expand(self._sigma(prev_t), x, batch)
            prev_sample = (1 - s_next) * x0 + s_next * eps  # = x + (s_next - s_now) * velocity
            if self.config.solver == "heun" and bool((prev_t >= 0).all()):
                self._heun_state = (x, velocity, s_now)
        if not return_dict:
            return (prev_sample, x0)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
