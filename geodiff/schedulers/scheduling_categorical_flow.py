"""Discrete flow matching for atom types, charges and bond orders (Campbell et al. 2024, "Generative Flows on
Discrete State-Spaces"; Gat et al. 2024, "Discrete Flow Matching").

The mixture path between data and a source distribution ``m`` (uniform, the training marginal, or
absorbing: all mass on a final [MASK] class), with ``s`` the noise level (``s = 1``: the source)::

    p_s(x | x_data) = (1 - s) [x = x_data] + s m(x)

the same marginals as D3PM with ``abar = 1 - s`` (so the two share the training loss: cross-entropy of the
model's data prediction). Sampling runs the continuous-time Markov chain whose rates follow from the model's
data prediction ``p(x_data | x_s)`` (Gat et al. eq. 24, in ``s``): from ``s`` to ``s' < s`` each element
jumps with probability ``(s - s') / s`` to a fresh draw from ``p(x_data | x_s)`` and otherwise stays (at
``s' = 0`` every element is drawn from the prediction). ``eta > 0`` adds Gat et al.'s corrector: the forward
rates scaled by ``1 + eta`` and backward rates (towards the source, with the source-posterior of the mixture
path) scaled by ``eta``, which leaves the path's marginals unchanged and lets early mistakes be revised; the
last step is corrector-free. Training timesteps ``t`` stand for ``s = (t + 1) / T``; ``set_timesteps(n)``
takes any ``n`` up to T, uniform in ``s`` or shifted towards the noise (``time_shift``).

Samples are one-hot float tensors ``[..., K]`` (node features, edge features or dense), as for
:class:`~geodiff.schedulers.CategoricalD3PMScheduler`.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.errors import GeodiffValueError
from geodiff.schedulers.base import GeodiffSchedulerOutput, flow_timesteps
from geodiff.schedulers.categorical_common import CategoricalMixin, PriorType, categorical_prior
from geodiff.schedulers.noise_schedules import check_timesteps

__all__ = ["CategoricalFlowMatchScheduler"]


class CategoricalFlowMatchScheduler(CategoricalMixin, SchedulerMixin, ConfigMixin):
    """Discrete flow matching with a uniform, marginal or absorbing source (see the module docstring).

    Args:
        num_classes: K, including the [MASK] class (the last one) for ``prior_type="absorbing"``.
        num_train_timesteps: T, the resolution of the noise-level grid (``s = (t + 1) / T``).
        prior_type: the source: ``uniform``, ``marginal`` (needs ``prior_probs``) or ``absorbing``.
        prior_probs: the marginal class distribution of the training data (``marginal``).
        eta: stochasticity of the sampler (0: the plain forward rates).
        time_shift: grid shift (1 = uniform in ``s``; > 1 spends more steps near the noise).
    """

    @register_to_config
    def __init__(self, num_classes: int, num_train_timesteps: int = 1000, prior_type: PriorType = "marginal",
                 prior_probs: list[float] | None = None, eta: float = 0.0,
                 time_shift: float = 1.0):  # fmt: skip
        check_timesteps(num_train_timesteps)
        if not eta >= 0:
            raise GeodiffValueError(f"eta: must be >= 0, got {eta}")
        if not time_shift > 0:
            raise GeodiffValueError(f"time_shift: must be > 0, got {time_shift}")
        self.prior = categorical_prior(num_classes, prior_type, prior_probs)
        T = num_train_timesteps
        #: noise level of every training timestep, float64 [T]
        self.sigmas = torch.arange(1, T + 1, dtype=torch.float64) / T
        self.alphas_cumprod = 1 - self.sigmas  # the D3PM with the same marginals
        self._init_timesteps()

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        sig = self.sigmas.to(t.device)
        return torch.where(t >= 0, sig[t.clamp_min(0)], torch.zeros((), dtype=sig.dtype, device=t.device))

    # ---------------------------------------------------------------------------------- sampling
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None,
                      timestep_spacing: str = "trailing") -> None:  # fmt: skip
        """``num_inference_steps`` intervals from ``s = 1`` to data, uniform in ``s`` then shifted by
        ``time_shift`` (``timestep_spacing`` is accepted for interface compatibility and ignored)."""
        c = self.config
        ts, self._prev = flow_timesteps(num_inference_steps, c.num_train_timesteps, c.time_shift)
        self.num_inference_steps = len(ts)
        self.timesteps = ts.to(device) if device is not None else ts

    def transition_probs(self, sample: torch.Tensor, pred_original_probs: torch.Tensor, timestep,
                         prev_timestep=None, batch: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The class probabilities of ``x_s'`` given ``x_s`` and the model's data prediction (module
        docstring): ``[x_s] + h (1 + eta) / s (p - [x_s]) + h eta (1 - P_src) / (1 - s) (m - [x_s])``,
        ``h = s - s'``, with ``P_src`` the posterior probability that ``x_s`` is still the source's draw:
        ``(1 - P_src) / (1 - s) = p(x_s) / (1 - s + s m(x_s))`` from the model's data prediction ``p`` (the
        mixture path's Bayes rule). Clipped to a distribution when a large step overshoots."""
        self._check_probs("sample", sample)
        self._check_probs("pred_original_probs", pred_original_probs)
        t = self._as_timesteps(timestep)
        prev_t = self._prev.to(t.device)[t] if prev_timestep is None else torch.as_tensor(prev_timestep)
        s = self._expand(self._sigma(t), sample, batch)
        s_next = self._expand(self._sigma(prev_t.to(t.device)), sample, batch)
        h, eta = s - s_next, self.config.eta
        jump = h / s * (pred_original_probs - sample)
        if eta > 0:
            m = self._m(sample)
            p_x = (pred_original_probs * sample).sum(-1, keepdim=True)  # the prediction's mass on x_s
            back = p_x / (1 - s + s * (m * sample).sum(-1, keepdim=True)).clamp_min(
                1e-300
            )  # (1 - P_src)/(1 - s)
            last = (s_next <= 0).to(sample.dtype)  # the last step is corrector-free
            jump = (1 + eta * (1 - last)) * jump + eta * (1 - last) * h * back * (m - sample)
        off = (jump * (1 - sample)).clamp_min(0)  # the probability of every other class
        total = off.sum(-1, keepdim=True)
        off = off / total.clamp_min(1.0)  # a step too large to be a probability: rescaled
        return off + sample * (1 - off.sum(-1, keepdim=True))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             batch: torch.Tensor | None = None, generator: torch.Generator | None = None,
             output_type: Literal["logits", "probs"] = "logits", return_dict: bool = True,
             deterministic: bool = False) -> GeodiffSchedulerOutput | tuple:  # fmt: skip
        """Draw ``x_s'`` given the model's data logits (or probabilities). ``deterministic=True`` takes the
        most probable class instead of a draw (used on the last step, where the draw is the data prediction
        itself). Returns one-hot ``prev_sample`` and ``pred_original_sample`` = the data probabilities."""
        probs = self._model_probs(model_output, sample, output_type)
        trans = self.transition_probs(sample, probs, timestep, batch=batch)
        prev_sample = self._draw(trans, generator, deterministic)
        if not return_dict:
            return (prev_sample, probs)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=probs)
