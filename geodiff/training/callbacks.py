"""Callbacks of ``geodiff train`` (the ``callbacks`` config group builds them): export of the EMA model,
and per-process seeds under DDP."""

from __future__ import annotations

import time

import lightning.pytorch as L
import torch

from geodiff.io import device_description
from geodiff.training.optim import describe_lr_schedule

__all__ = ["ExportCallback", "RankSeed"]


class RankSeed(L.Callback):
    """Distinct, reproducible randomness per process: at the start of training, process ``rank`` of a
    multi-process run reseeds with ``seed + rank`` (timesteps, noise and dropout differ between ranks; the
    same seed gives the same run for the same world size). A single-process run keeps ``seed`` as set
    before the model was built. Data-loader workers are seeded by Lightning from the same global seed."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            L.seed_everything(self.seed + trainer.global_rank, workers=True, verbose=False)


class ExportCallback(L.Callback):
    """Export the EMA model (safetensors) every ``every_n_epochs`` epochs and at the end of training, with
    a record of the run: ``command`` (the command line that started it), hardware, wall time, batch size,
    the loss weights, the last validation loss and the model it was warm-started from."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1, command: str | None = None):
        self.dirpath, self.every, self.command = dirpath, every_n_epochs, command
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def run_record(self, trainer, pl_module) -> dict:
        """What this run adds to the export's training record."""
        record: dict = {}
        if self.command:
            record["command"] = self.command
        where = device_description(pl_module.device)
        if trainer.num_devices > 1:
            where = f"{trainer.num_devices} x {where}"
        record["hardware"] = f"{where}, torch {torch.__version__}, precision {trainer.precision}"
        if self._start is not None:
            minutes = (time.monotonic() - self._start) / 60
            record["wall_time"] = f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
        datamodule = getattr(trainer, "datamodule", None)
        batch_size = getattr(datamodule, "batch_size", None)
        if isinstance(batch_size, int):
            record["batch_size"] = batch_size
        record.update(getattr(datamodule, "run_notes", dict)())
        h = pl_module.hparams
        schedule = describe_lr_schedule(h.get("lr_schedule", "constant"), h.get("lr"), trainer,
                                        h.get("lr_decay_steps"), h.get("lr_min_ratio", 1.0))  # fmt: skip
        if schedule:
            record["lr_schedule"] = schedule
        init_from = h.get("init_from")
        if init_from:
            record["init_from"] = str(init_from)
        record.update(pl_module.run_notes())
        val = trainer.callback_metrics.get("val_loss")
        if val is not None:
            record["final_val_loss"] = round(float(val), 4)
        return record

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every == 0 and trainer.is_global_zero:
            pl_module.export_pretrained(self.dirpath, self.run_record(trainer, pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            pl_module.export_pretrained(self.dirpath, self.run_record(trainer, pl_module))
