"""Shared mechanics of the categorical schedulers (D3PM and discrete flow matching): the prior over K classes,
one-hot draws, and the forward marginal ``q(x_t | x_0) = abar_t x_0 + (1 - abar_t) m`` (for the discrete flow,
``abar = 1 - s``). Samples are one-hot float tensors ``[..., K]``."""

from __future__ import annotations

from typing import Literal

import torch

from geodiff.errors import GeodiffValueError
from geodiff.schedulers.base import TimestepMixin

__all__ = ["CategoricalMixin", "PriorType", "categorical_prior"]

PriorType = Literal["uniform", "marginal", "absorbing"]


def categorical_prior(num_classes: int, prior_type: str, prior_probs: list[float] | None) -> torch.Tensor:
    """The prior ``m`` [K] (float64): uniform, the given marginal (normalised) or absorbing (all mass on the
    last class, [MASK])."""
    if num_classes < 2:
        raise GeodiffValueError(f"num_classes: need at least 2 classes, got {num_classes}")
    if prior_type == "uniform":
        return torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    if prior_type == "absorbing":
        m = torch.zeros(num_classes, dtype=torch.float64)
        m[-1] = 1.0
        return m
    if prior_type == "marginal":
        if prior_probs is None or len(prior_probs) != num_classes:
            raise GeodiffValueError(
                f"prior_probs: prior_type='marginal' needs {num_classes} class probabilities, got "
                f"{None if prior_probs is None else len(prior_probs)}"
            )
        m = torch.tensor(prior_probs, dtype=torch.float64)
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or float(m.sum()) <= 0:
            raise GeodiffValueError("prior_probs: must be finite, non-negative and not all zero")
        return m / m.sum()
    raise GeodiffValueError(f"prior_type: expected uniform, marginal or absorbing, got {prior_type!r}")


class CategoricalMixin(TimestepMixin):
    """Helpers of the categorical schedulers; the subclass sets ``self.prior`` and ``self.alphas_cumprod``."""

    prior: torch.Tensor

    def _check_probs(self, name: str, x: torch.Tensor) -> None:
        self._check_sample(name, x)
        if x.shape[-1] != self.config.num_classes:
            raise GeodiffValueError(
                f"{name}: last dimension must be num_classes = {self.config.num_classes}, got {list(x.shape)}"
            )

    def _m(self, like: torch.Tensor) -> torch.Tensor:
        return self.prior.to(device=like.device, dtype=like.dtype)

    def _sample_categorical(self, probs: torch.Tensor, generator) -> torch.Tensor:
        flat = probs.reshape(-1, probs.shape[-1]).clamp_min(0)
        if flat.shape[0] == 0:
            return torch.zeros_like(probs)
        gen_device = generator.device if generator is not None else flat.device
        idx = torch.multinomial(flat.to(gen_device, torch.float64), 1, generator=generator).to(flat.device)
        return torch.zeros_like(flat).scatter_(1, idx, 1.0).view_as(probs)

    def _model_probs(self, model_output: torch.Tensor, sample: torch.Tensor, output_type: str):
        """The model's class probabilities from its ``logits`` or (unnormalised) ``probs``, checked against
        the sample's shape."""
        self._check_probs("model_output", model_output)
        if model_output.shape != sample.shape:
            raise GeodiffValueError(
                f"model_output: shape {list(model_output.shape)} differs from sample {list(sample.shape)}"
            )
        if output_type == "logits":
            return torch.softmax(model_output, dim=-1)
        if output_type == "probs":
            return model_output / model_output.sum(-1, keepdim=True).clamp_min(1e-300)
        raise GeodiffValueError(f"output_type: expected logits or probs, got {output_type!r}")

    def _draw(self, probs: torch.Tensor, generator, deterministic: bool = False) -> torch.Tensor:
        """One-hot draws from ``probs``, or its most probable class with ``deterministic``."""
        if deterministic:
            return torch.zeros_like(probs).scatter_(-1, probs.argmax(-1, keepdim=True), 1.0)
        return self._sample_categorical(probs, generator)

    def q_probs(self, original_samples: torch.Tensor, timesteps, batch: torch.Tensor | None = None):
        """Class probabilities of q(x_t | x_0) = abar_t x0 + (1 - abar_t) m."""
        self._check_probs("original_samples", original_samples)
        t = self._as_timesteps(timesteps, "timesteps")
        abar = self._expand(self._abar(t), original_samples, batch)
        return abar * original_samples + (1 - abar) * self._m(original_samples)

    def add_noise(self, original_samples: torch.Tensor, timesteps, batch: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Sample one-hot x_t ~ q(x_t | x_0) for one-hot (or soft) ``original_samples`` ``[..., K]``."""
        return self._sample_categorical(self.q_probs(original_samples, timesteps, batch), generator)

    def sample_prior(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:  # fmt: skip
        """One-hot samples ``[*shape, K]`` from the prior m (the limit of q(x_T | x_0))."""
        probs = self.prior.to(device=device, dtype=dtype).expand(*tuple(shape), -1)
        return self._sample_categorical(probs, generator)
