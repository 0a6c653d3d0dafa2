"""Exponential moving average of weights with a warm-up, for ``torch.optim.swa_utils.AveragedModel``.

The decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (the warm-up diffusers' EMAModel uses),
so a short run's EMA model is not dominated by the random initial weights.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

__all__ = ["ema_model"]


def _warmup_ema(decay: float):
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(list(ema_params), list(params), 1.0 - d)

    return update


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An ``AveragedModel`` copy of ``model`` updated as a warm-up EMA; never receives gradients."""
    ema = AveragedModel(model, multi_avg_fn=_warmup_ema(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
