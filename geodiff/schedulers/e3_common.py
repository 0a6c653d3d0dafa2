"""Shared mechanics of the Gaussian E(3) schedulers (DDPM and DDIM): zero-CoM projection, forward noising,
conversions between epsilon / x0 / v predictions, SNR-based loss weights and the prior.

Positions may be node-flattened ``[num_nodes, ..., 3]`` with ``batch`` (graph ids), padded
``[B, N, ..., 3]`` with an optional ``mask`` ``[B, N]``, or one graph ``[N, 3]``. With
``center_of_mass=True`` noise, predictions and samples are kept in each graph's zero-CoM subspace, so the
forward and reverse processes commute with rotations, reflections and translations (EDM, EQGAT-diff).
"""

from __future__ import annotations

from typing import Literal

import torch

from geodiff.errors import GeodiffValueError
from geodiff.manifolds import euclidean
from geodiff.schedulers.base import TimestepMixin

PredictionType = Literal["epsilon", "sample", "v_prediction"]


class E3GaussianMixin(TimestepMixin):
    """Helpers for Gaussian diffusion on (zero-CoM) Euclidean coordinates; needs ``self.config``."""

    def _init_gaussian(self) -> None:
        c = self.config
        if c.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise GeodiffValueError(
                f"prediction_type: expected epsilon, sample or v_prediction, got {c.prediction_type!r}"
            )
        self._init_schedule()

    # ------------------------------------------------------------------------------ zero-CoM projection
    def project(
        self, x: torch.Tensor, batch: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Remove each graph's centre of mass (no-op when ``center_of_mass=False``, except masking)."""
        if not self.config.center_of_mass:
            return x * mask.to(x.dtype).unsqueeze(-1) if mask is not None else x
        if batch is not None:
            return euclidean.remove_mean(x, batch)
        if mask is not None:
            if x.dim() != 3:
                raise GeodiffValueError(f"mask: supported for [B, N, 3] samples, got sample {list(x.shape)}")
            return euclidean.remove_mean_masked(x, mask)
        if x.dim() == 2:
            return x - x.mean(dim=0, keepdim=True)
        dims = tuple(range(1, x.dim() - 1))
        return x - x.mean(dim=dims, keepdim=True)

    def sample_prior(
        self,
        shape: tuple[int, ...] | torch.Size,
        batch: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw x_T from the prior: a standard Gaussian (in the zero-CoM subspace when enabled)."""
        like = torch.empty(0, dtype=dtype, device=device)
        return self.project(self._randn(shape, generator, like), batch, mask)

    # ---------------------------------------------------------------------------------- forward process
    def _coefs(self, timesteps, like, batch):
        t = self._as_timesteps(timesteps, "timesteps")
        abar = self._expand(self._abar(t), like, batch)
        return abar.sqrt(), (1 - abar).sqrt()

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor | int,
        batch: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """q(x_t | x_0): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (both projected to zero CoM)."""
        self._check_sample("original_samples", original_samples)
        self._check_sample("noise", noise)
        if noise.shape != original_samples.shape:
            raise GeodiffValueError(
                f"noise: shape {list(noise.shape)} differs from original_samples "
                f"{list(original_samples.shape)}"
            )
        a, s = self._coefs(timesteps, original_samples, batch)
        x0 = self.project(original_samples, batch, mask)
        return a * x0 + s * self.project(noise, batch, mask)

    def get_velocity(self, sample, noise, timesteps, batch=None) -> torch.Tensor:
        """v-prediction target ``sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022)."""
        a, s = self._coefs(timesteps, sample, batch)
        return a * noise - s * sample

    def training_target(self, original_samples, noise, timesteps, batch=None, mask=None) -> torch.Tensor:
        """What the model should output under ``prediction_type`` for this (x0, eps, t)."""
        x0 = self.project(original_samples, batch, mask)
        eps = self.project(noise, batch, mask)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return eps
        if kind == "sample":
            return x0
        return self.get_velocity(x0, eps, timesteps, batch)

    def convert_model_output(self, model_output, timestep, sample, batch=None, mask=None):
        """(x0_hat, eps_hat) from the raw model output, both projected to zero CoM."""
        a, s = self._coefs(timestep, sample, batch)
        out = self.project(model_output, batch, mask)
        kind = self.config.prediction_type
        if kind == "epsilon":
            eps = out
            x0 = (sample - s * eps) / a
        elif kind == "sample":
            x0 = out
            eps = (sample - a * x0) / s
        else:
            x0 = a * sample - s * out
            eps = s * sample + a * out
        return x0, eps

    # ---------------------------------------------------------------------------------- loss weighting
    def snr(self, timesteps) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` (float64)."""
        abar = self._abar(self._as_timesteps(timesteps, "timesteps"))
        return abar / (1 - abar)

    def loss_weight(self, timesteps, min_weight: float = 0.05, max_weight: float = 1.5) -> torch.Tensor:
        """EQGAT-diff's time weight ``clamp(abar / (1 - abar), 0.05, 1.5)`` (float64, per timestep)."""
        return self.snr(timesteps).clamp(min_weight, max_weight)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """diffusers interface: these schedulers do not rescale the model input."""
        return sample

    def _step_inputs(self, model_output, timestep, sample, batch):
        self._check_sample("model_output", model_output)
        self._check_sample("sample", sample)
        if model_output.shape != sample.shape:
            raise GeodiffValueError(
                f"model_output: shape {list(model_output.shape)} differs from sample {list(sample.shape)}"
            )
        t = self._as_timesteps(timestep)
        prev_t = self._prev.to(t.device)[t]
        return t, prev_t
