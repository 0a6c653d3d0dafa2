"""Learning-rate schedules shared by the LightningModules: constant (the papers' setting) or a cosine decay,
for a last training stage that settles a model trained at a constant rate."""

from __future__ import annotations

import math

import torch

from geodiff.errors import GeodiffError

__all__ = ["LR_SCHEDULES", "check_lr_schedule", "cosine_factor", "decay_total", "describe_lr_schedule",
           "optimizer_config"]  # fmt: skip

LR_SCHEDULES = ("constant", "cosine")


def cosine_factor(step: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base rate at ``step``: 1 at step 0, ``min_ratio`` at ``total`` and after."""
    if step >= total:
        return min_ratio
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * step / total))


def check_lr_schedule(schedule: str, decay_steps: int | None, min_ratio: float) -> None:
    """One-line errors for a bad schedule, raised when the module is built (before any data is read)."""
    if schedule not in LR_SCHEDULES:
        known = ", ".join(LR_SCHEDULES)
        raise GeodiffError(f"module.lr_schedule: unknown schedule {schedule!r} (choose from {known})")
    if not 0.0 <= min_ratio <= 1.0:
        raise GeodiffError(f"module.lr_min_ratio: must lie in [0, 1], got {min_ratio}")
    if decay_steps is not None and decay_steps <= 0:
        raise GeodiffError(f"module.lr_decay_steps: must be a positive number of steps, got {decay_steps}")


def decay_total(trainer, decay_steps: int | None) -> int:
    """The optimizer steps a decay spans: ``decay_steps``, or the trainer's estimate of the whole run."""
    total = decay_steps if decay_steps is not None else trainer.estimated_stepping_batches
    if not math.isfinite(total) or total <= 0:
        raise GeodiffError(
            "module.lr_schedule=cosine: the run has no step bound; "
            "set trainer.max_steps or module.lr_decay_steps"
        )
    return int(total)


def describe_lr_schedule(schedule: str, lr: float, trainer, decay_steps: int | None,
                         min_ratio: float) -> str | None:  # fmt: skip
    """The schedule in words for run records, e.g. ``cosine from 0.0003 to 1.5e-05 over 8600 steps``;
    None for the constant rate."""
    if schedule == "constant":
        return None
    return f"{schedule} from {lr:g} to {lr * min_ratio:g} over {decay_total(trainer, decay_steps)} steps"


def optimizer_config(optimizer: torch.optim.Optimizer, schedule: str, trainer, decay_steps: int | None,
                     min_ratio: float):  # fmt: skip
    """What ``configure_optimizers`` returns: the optimizer alone (constant) or with a per-step cosine
    schedule over ``decay_steps`` optimizer steps (default: the trainer's estimate of the whole run, so set
    ``trainer.max_steps`` for runs bounded by ``max_time``)."""
    check_lr_schedule(schedule, decay_steps, min_ratio)
    if schedule == "constant":
        return optimizer
    total = decay_total(trainer, decay_steps)
    # Lightning restores the scheduler's step count on resume, so the decay goes on where it stopped
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: cosine_factor(i, total, min_ratio))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
