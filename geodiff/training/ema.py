"""Exponential moving average of weights, for ``torch.optim.swa_utils.AveragedModel``.

With the warm-up, the decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (the warm-up diffusers'
EMAModel uses), so a short run's EMA model is not dominated by the random initial weights. A run that starts
from trained weights (``init_from``) needs no warm-up: the plain decay averages over ``1 / (1 - decay)``
steps from the start instead of a window that only reaches that length after ~``9 / (1 - decay)`` steps.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

__all__ = ["ema_model"]


def _ema(decay: float, warmup: bool):
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        ema_params, params = list(ema_params), list(params)
        if ema_params and not (ema_params[0].is_floating_point() or ema_params[0].is_complex()):
            for e, p in zip(ema_params, params, strict=True):  # integer buffers: the latest value
                e.copy_(p)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


def ema_model(model: torch.nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An ``AveragedModel`` copy of ``model`` updated as an EMA (with the warm-up unless ``warmup=False``);
    it never receives gradients, so DDP does not wait for them."""
    ema = AveragedModel(model, multi_avg_fn=_ema(decay, warmup), use_buffers=True)
    ema.requires_grad_(False)
    return ema
