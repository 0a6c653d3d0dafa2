"""Discrete (categorical) diffusion, D3PM (Austin et al. 2021), for atom types, charges and bond orders.

One-step transition ``Q_t = a_t I + (1 - a_t) 1 m^T`` (row = current class, column = next class), with
``m`` the prior: uniform, the training marginal (MiDi, EQGAT-diff: Vignac et al. 2023) or absorbing (all mass
on a final [MASK] class). These matrices compose to ``Qbar_t = abar_t I + (1 - abar_t) 1 m^T``, so

    q(x_t | x_0)            = abar_t x_0 + (1 - abar_t) m
    q(x_t' | x_t, x_0)     ∝ (x_t Q_{t'->t}^T) ⊙ (x_0 Qbar_t')

and the reverse step marginalises the posterior over the model's x0 probabilities p(x0 | x_t) (Austin et
al. eq. 4). Everything is computed from the structure of Q in closed form, so timesteps may differ per
element and no K x K matrix is ever built.

Samples are one-hot float tensors ``[..., K]``; any leading shape works: node features ``[num_nodes, K]``,
edge features ``[num_edges, K]`` or dense ``[B, N, N, K]``. Pass ``batch`` (graph id of each node or edge)
for per-graph timesteps. Undirected edges are the caller's to keep symmetric: noise and step one triangle
and mirror it.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geodiff.schedulers.base import GeodiffSchedulerOutput
from geodiff.schedulers.categorical_common import CategoricalMixin, PriorType, categorical_prior
from geodiff.schedulers.noise_schedules import BetaSchedule

__all__ = ["CategoricalD3PMScheduler"]


class CategoricalD3PMScheduler(CategoricalMixin, SchedulerMixin, ConfigMixin):
    """D3PM with uniform, marginal or absorbing prior.

    Args:
        num_classes: K, including the [MASK] class (the last one) for ``prior_type="absorbing"``.
        num_train_timesteps, beta_schedule, beta_start, beta_end, cosine_s, power, nu: the schedule of
            ``abar_t`` (see :mod:`geodiff.schedulers.noise_schedules`; EQGAT-diff: cosine, T = 500).
        prior_type: ``uniform``, ``marginal`` (needs ``prior_probs``) or ``absorbing``.
        prior_probs: the marginal class distribution of the training data (``marginal``).
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int,
        num_train_timesteps: int = 500,
        beta_schedule: BetaSchedule = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        cosine_s: float = 0.008,
        power: float = 2.0,
        nu: float = 1.0,
        prior_type: PriorType = "marginal",
        prior_probs: list[float] | None = None,
    ):
        self.prior = categorical_prior(num_classes, prior_type, prior_probs)
        self._init_schedule()

    def posterior_probs(
        self,
        sample: torch.Tensor,
        pred_original_probs: torch.Tensor,
        timestep,
        prev_timestep=None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """p(x_t' | x_t) = sum_k q(x_t' | x_t, x0 = k) p(x0 = k | x_t).

        With a one-hot ``pred_original_probs`` this is the exact posterior q(x_t' | x_t, x0).
        """
        self._check_probs("sample", sample)
        self._check_probs("pred_original_probs", pred_original_probs)
        t = self._as_timesteps(timestep)
        prev_t = self._prev.to(t.device)[t] if prev_timestep is None else torch.as_tensor(prev_timestep)
        abar_t = self._expand(self._abar(t), sample, batch)
        abar_prev = self._expand(self._abar(prev_t.to(t.device)), sample, batch)
        a = abar_t / abar_prev  # one-step signal of Q_{t' -> t}
        m = self._m(sample)
        m_xt = (sample * m).sum(-1, keepdim=True)  # m[x_t]
        # 1. likelihood of x_t from every class j at t': Q_{t'->t}[j, x_t] = a [j = x_t] + (1 - a) m[x_t]
        left = a * sample + (1 - a) * m_xt
        # 2. normaliser per x0 class k: Qbar_t[k, x_t]; classes that cannot reach x_t drop out
        denom = abar_t * sample + (1 - abar_t) * m_xt
        v = torch.where(denom > 0, pred_original_probs / denom.clamp_min(1e-300), torch.zeros_like(denom))
        # 3. (v Qbar_t')_j = abar' v_j + (1 - abar') m_j sum_k v_k
        right = abar_prev * v + (1 - abar_prev) * m * v.sum(-1, keepdim=True)
        post = left * right
        return post / post.sum(-1, keepdim=True).clamp_min(1e-300)

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        batch: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        output_type: Literal["logits", "probs"] = "logits",
        return_dict: bool = True,
        deterministic: bool = False,
    ) -> GeodiffSchedulerOutput | tuple:
        """Sample x_t' from p(x_t' | x_t) given the model's x0 logits (or probabilities).

        ``deterministic=True`` takes the most probable class of p(x_t' | x_t) instead of a sample (used
        on the last step of sampling, where x_t' is x_0). Returns one-hot ``prev_sample`` and
        ``pred_original_sample`` = the x0 probabilities.
        """
        probs = self._model_probs(model_output, sample, output_type)
        post = self.posterior_probs(sample, probs, timestep, batch=batch)
        prev_sample = self._draw(post, generator, deterministic)
        if not return_dict:
            return (prev_sample, probs)
        return GeodiffSchedulerOutput(prev_sample=prev_sample, pred_original_sample=probs)
