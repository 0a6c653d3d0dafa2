"""What the trajectory and registration LightningModules share: data description carried in Lightning
checkpoints, and export of the EMA model + scheduler + ``<family>.json`` (safetensors, atomically)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from geodiff.errors import GeodiffError
from geodiff.io import atomic_path, atomic_save_pretrained, public_config

__all__ = ["ExportMixin", "load_exported_weights"]


class ExportMixin:
    """Needs ``self.ema`` (an AveragedModel), ``self.scheduler_``, ``self.data_info`` and ``FAMILY``."""

    FAMILY: str = ""

    def _set_model(self, model, ema_decay: float, init_from: str | None) -> None:
        """``self.model`` (warm-started from ``init_from`` when given) and its warm-up EMA copy."""
        from geodiff.training.ema import ema_model

        if init_from:
            load_exported_weights(model, init_from)
        self.model = model
        self.ema = ema_model(model, ema_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geodiff"] = {"data": self.data_info}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.data_info = checkpoint.get("geodiff", {}).get("data", {})

    def export_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the EMA model, the scheduler and ``<FAMILY>.json`` into ``directory``."""
        directory = Path(directory)
        atomic_save_pretrained(copy.deepcopy(self.ema.module).float().cpu(), directory / "model")
        atomic_save_pretrained(self.scheduler_, directory / "scheduler")
        meta = {"family": self.FAMILY, "data": self.data_info,
                "training": {"global_step": int(self.global_step), "epoch": int(self.current_epoch),
                             **(extra or {})}}  # fmt: skip
        with atomic_path(directory / f"{self.FAMILY}.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return directory


def load_exported_weights(model, directory: str | os.PathLike) -> None:
    """Warm start ``model`` from an exported model folder (``<dir>/model``, e.g. a shipped checkpoint), so
    CPU training can go on across sessions; the architectures must match exactly."""
    from geodiff.cli import resolve_path

    path = resolve_path(str(directory)) / "model"
    if not (path / "config.json").is_file():
        raise GeodiffError(f"init_from: {path.parent} is not an exported model (no model/config.json)")
    src = type(model).from_pretrained(path, low_cpu_mem_usage=False)
    mine, theirs = public_config(model), public_config(src)
    if mine != theirs:
        diff = {k: (theirs.get(k), mine.get(k)) for k in mine if mine.get(k) != theirs.get(k)}
        raise GeodiffError(f"init_from: another architecture (exported, wanted): {diff}")
    model.load_state_dict(src.state_dict())
