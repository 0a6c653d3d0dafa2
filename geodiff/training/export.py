"""What the trajectory and registration LightningModules share: data description carried in Lightning
checkpoints, and export of the EMA model + scheduler + ``<family>.json`` (safetensors, atomically)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from geodiff.io import atomic_path, atomic_save_pretrained

__all__ = ["ExportMixin"]


class ExportMixin:
    """Needs ``self.ema`` (an AveragedModel), ``self.scheduler_``, ``self.data_info`` and ``FAMILY``."""

    FAMILY: str = ""

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
