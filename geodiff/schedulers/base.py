"""Pieces every geodiff scheduler shares: timestep bookkeeping and per-graph coefficient lookup.

A scheduler holds a float64 ``alphas_cumprod`` of length ``num_train_timesteps``. ``set_timesteps`` picks the
(descending) inference timesteps; each step goes from ``t`` to ``previous_timestep(t)``, with ``-1`` meaning
clean data (``abar = 1``). Timesteps may be one integer for the whole batch or one per graph/sample:

* node-flattened graphs: pass ``batch`` (``[num_nodes]`` graph ids); per-graph timesteps are ``[num_graphs]``;
* otherwise per-sample timesteps are ``[sample.shape[0]]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diffusers.utils import BaseOutput

from geodiff.config import ExactConfigMixin
from geodiff.errors import GeodiffValueError, check_finite
from geodiff.schedulers.noise_schedules import betas_from_alphas_cumprod, make_alphas_cumprod

__all__ = ["GeodiffSchedulerOutput", "TimestepMixin", "TimestepSpacing", "convert", "flow_timesteps",
           "load_scheduler", "rescale"]  # fmt: skip

TimestepSpacing = Literal["trailing", "leading", "linspace"]


@dataclass
class GeodiffSchedulerOutput(BaseOutput):
    """Output of a scheduler's ``step``.

    Attributes:
        prev_sample: the state at the previous (less noisy) timestep, to feed back into the model.
        pred_original_sample: the model's estimate of the clean sample (x0), after any projection.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def convert(scheduler, cls: type, **overrides):
    """A ``cls`` scheduler with ``scheduler``'s schedule: the config fields ``cls`` takes, then ``overrides``
    (e.g. ``convert(ddpm, E3DDIMScheduler, eta=0.0)``: the same noise schedule, DDIM steps). Fields ``cls``
    does not take (DDPM's ``variance_type`` for DDIM) are left out, without diffusers' warning."""
    import inspect

    keys = inspect.signature(cls.__init__).parameters  # sees through register_to_config's wrapper
    kwargs = {k: v for k, v in scheduler.config.items() if k in keys}
    return cls(**{**kwargs, **overrides})


def flow_timesteps(num_inference_steps: int, num_train_timesteps: int,
                   time_shift: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The sampling grid of the flow-matching schedulers, whose training timestep ``t`` stands for the noise
    level ``s = (t + 1) / T``: ``num_inference_steps`` intervals from ``s = 1`` to data, uniform in ``s`` then
    shifted towards the noise by ``s' = shift s / (1 + (shift - 1) s)``. Returns the descending timesteps
    and the ``[T]`` map from each timestep to the next (``-1``: data)."""
    T = num_train_timesteps
    if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= T:
        raise GeodiffValueError(
            f"num_inference_steps: must be an integer in [1, {T}], got {num_inference_steps!r}"
        )
    s = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)[:-1]
    s = time_shift * s / (1 + (time_shift - 1) * s)
    ts = torch.unique_consecutive((torch.round(s * T).long() - 1).clamp(0, T - 1))
    prev = torch.arange(-1, T - 1, dtype=torch.long)
    prev[ts] = torch.cat((ts[1:], ts.new_full((1,), -1)))
    return ts, prev


def load_scheduler(folder, *classes: type):
    """``from_pretrained`` of the scheduler saved in ``folder``, as the one of ``classes`` its
    ``scheduler_config.json`` names (``_class_name``); the first class when it names none of them (whose
    loader then says what is wrong). An export's diffusion or flow-matching scheduler loads either way."""
    try:
        name = json.loads((Path(folder) / "scheduler_config.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        name = None
    cls = next((k for k in classes if k.__name__ == name), classes[0])
    return cls.from_pretrained(folder)


def rescale(scheduler, num_steps: int, **overrides):
    """A new scheduler of the same kind whose *training* schedule has ``num_steps`` steps: the schedule
    re-discretised rather than strided. The continuous schedules (cosine, polynomial, adaptive cosine) are
    functions of ``t / T`` and are simply rebuilt with ``T = num_steps``; a ``linear`` schedule keeps its
    shape by scaling both beta endpoints by ``T / num_steps``, as the "improved DDPM" code base does
    (``get_named_beta_schedule``), which is how GeoTDM's reference samples with fewer steps. A model used
    with it is fed timesteps ``0 .. num_steps - 1`` (GeoTDM's reference does exactly that).

    Raises GeodiffValueError when the rescaled linear betas would reach 1 (too few steps)."""
    from geodiff.schedulers.noise_schedules import check_timesteps

    c = scheduler.config
    if "beta_schedule" not in c:
        raise GeodiffValueError(
            f"schedule: rescaled applies to diffusion schedules; a {type(scheduler).__name__} takes any "
            "number of steps on its own grid (schedule=strided)"
        )
    steps = check_timesteps(num_steps)
    fields = {"num_train_timesteps": steps}
    if c.beta_schedule == "linear":
        scale = c.num_train_timesteps / steps
        if c.beta_end * scale >= 1:
            raise GeodiffValueError(
                f"num_inference_steps: a linear schedule rescaled to {steps} steps has beta_end "
                f"{c.beta_end * scale:g} >= 1; use more than {c.beta_end * c.num_train_timesteps:g} steps"
            )
        fields.update(beta_start=c.beta_start * scale, beta_end=c.beta_end * scale)
    return convert(scheduler, type(scheduler), **fields, **overrides)


class TimestepMixin(ExactConfigMixin):
    """Timestep grid and coefficient lookup; the subclass sets ``self.alphas_cumprod`` (float64, [T]). Its
    config keeps positional arguments too (:class:`~geodiff.config.ExactConfigMixin`)."""

    alphas_cumprod: torch.Tensor
    order = 1

    def _init_schedule(self) -> None:
        """Build ``alphas_cumprod`` / ``betas`` / ``alphas`` from the config's schedule fields, then the
        default timestep grid (every scheduler calls this at the end of ``__init__``)."""
        c = self.config
        self.alphas_cumprod = make_alphas_cumprod(
            c.beta_schedule, c.num_train_timesteps, c.beta_start, c.beta_end, c.cosine_s, c.power, c.nu
        )
        self.betas = betas_from_alphas_cumprod(self.alphas_cumprod)
        self.alphas = 1 - self.betas
        self._init_timesteps()

    def _posterior(self, t: torch.Tensor, prev_t: torch.Tensor, expand):
        """DDPM posterior q(x_t' | x_t, x0) between timesteps ``t`` and ``t' = prev_t`` (Ho et al. eq. 7).

        ``expand`` broadcasts per-element float64 values onto the sample. Returns
        ``(coef_x0, coef_xt, variance)`` with mean ``coef_x0 x0 + coef_xt x_t``; the variance is 0 when
        ``t'`` is clean data.
        """
        abar_t, abar_prev = expand(self._abar(t)), expand(self._abar(prev_t))
        alpha = abar_t / abar_prev  # effective one-step alpha over the (possibly skipped) interval
        beta = 1 - alpha
        coef_x0 = abar_prev.sqrt() * beta / (1 - abar_t)
        coef_xt = alpha.sqrt() * (1 - abar_prev) / (1 - abar_t)
        return coef_x0, coef_xt, beta * (1 - abar_prev) / (1 - abar_t)

    def _init_timesteps(self) -> None:
        T = self.config.num_train_timesteps
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(T - 1, -1, -1, dtype=torch.long)
        self._prev = torch.arange(-1, T - 1, dtype=torch.long)  # default: one step back
        self.init_noise_sigma = 1.0

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        timestep_spacing: TimestepSpacing = "trailing",
    ) -> None:
        """Choose ``num_inference_steps`` descending timesteps out of ``num_train_timesteps``.

        ``trailing`` (default) starts at ``T - 1`` and steps evenly down, ``linspace`` spans ``T - 1 .. 0``,
        ``leading`` is DDIM's original ``0, k, 2k, ...`` grid. The step after the last timestep goes to
        clean data.
        """
        T = self.config.num_train_timesteps
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= T:
            raise GeodiffValueError(
                f"num_inference_steps: must be an integer in [1, {T}], got {num_inference_steps!r}"
            )
        n = num_inference_steps
        if timestep_spacing == "trailing":
            ts = torch.round(torch.arange(T, 0, -T / n, dtype=torch.float64)).long() - 1
        elif timestep_spacing == "linspace":
            ts = torch.round(torch.linspace(T - 1, 0, n, dtype=torch.float64)).long()
        elif timestep_spacing == "leading":
            ts = (torch.arange(n, dtype=torch.long) * (T // n)).flip(0)
        else:
            raise GeodiffValueError(
                f"timestep_spacing: expected trailing, leading or linspace, got {timestep_spacing!r}"
            )
        ts = torch.unique_consecutive(ts)
        self.timesteps = ts.to(device) if device is not None else ts
        self.num_inference_steps = len(ts)
        prev = torch.arange(-1, T - 1, dtype=torch.long)
        prev[ts] = torch.cat((ts[1:], ts.new_full((1,), -1)))
        self._prev = prev

    def previous_timestep(self, timestep: torch.Tensor | int) -> torch.Tensor:
        """The timestep the next ``step`` goes to (``-1`` = clean data)."""
        t = self._as_timesteps(timestep)
        return self._prev.to(t.device)[t]

    # ------------------------------------------------------------------------------------------- helpers
    def _as_timesteps(self, timesteps, name: str = "timestep") -> torch.Tensor:
        t = torch.as_tensor(timesteps)
        if t.is_floating_point():
            if not bool((t == t.round()).all()):
                raise GeodiffValueError(f"{name}: discrete timesteps must be integers, got {t}")
            t = t.long()
        t = t.long()
        T = self.config.num_train_timesteps
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= T):
            raise GeodiffValueError(
                f"{name}: out of range [0, {T - 1}] (got min {int(t.min())}, max {int(t.max())})"
            )
        return t

    def _abar(self, t: torch.Tensor) -> torch.Tensor:
        """abar at ``t`` with ``abar_{-1} = 1`` (float64, same shape as ``t``)."""
        ac = self.alphas_cumprod.to(t.device)
        return torch.where(t >= 0, ac[t.clamp_min(0)], torch.ones((), dtype=ac.dtype, device=t.device))

    @staticmethod
    def _expand(
        values: torch.Tensor, like: torch.Tensor, batch: torch.Tensor | None, tail: int = 0
    ) -> torch.Tensor:
        """Broadcast per-graph (``batch``) or per-sample values onto ``like`` ([lead, ..., *tail dims])."""
        values = values.to(device=like.device)
        if values.dim() == 0:
            return values.to(like.dtype)
        if batch is not None:
            if batch.numel() and values.shape[0] <= int(batch.max()):
                raise GeodiffValueError(
                    f"timestep: got {values.shape[0]} per-graph timesteps but batch has "
                    f"{int(batch.max()) + 1} graphs"
                )
            values = values[batch]
        if values.shape[0] != like.shape[0]:
            raise GeodiffValueError(
                f"timestep: expected one timestep per sample ({like.shape[0]}) or per graph, "
                f"got {values.shape[0]}"
            )
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @staticmethod
    def _check_sample(name: str, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise GeodiffValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        check_finite(name, x)

    @staticmethod
    def _randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
        gen_device = generator.device if generator is not None else like.device
        return torch.randn(tuple(shape), generator=generator, dtype=like.dtype, device=gen_device).to(
            like.device
        )
