"""One Lightning module for every family: :class:`DiffusionModule`.

It owns what the families share: the optimiser (Adam), the learning-rate schedule, the EMA of the weights,
seeded validation, logging (``sync_dist`` across processes) and the one export path (safetensors + JSON).
A family subclass supplies three things:

* :meth:`DiffusionModule.loss` - its training objective on a batch, as a dict with a ``"loss"`` entry;
* its schedulers (built by Hydra from ``configs/scheduler/*`` and passed in as ``scheduler``), returned by
  :meth:`DiffusionModule.export_schedulers` under the folder names they are saved as;
* :meth:`DiffusionModule.sample_metrics` - what sampling with the EMA model scores on a validation batch
  (optional), and :meth:`DiffusionModule.describe` - what the export must carry besides weights (data
  record, vocabulary, statistics).

Exports are written by :meth:`DiffusionModule.export_pretrained`: ``model/`` (the EMA denoiser), a folder per
scheduler and ``<FAMILY>.json`` with :meth:`describe` and the training record (lineage included).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import lightning.pytorch as L
import torch

from geodiff.io import atomic_save_pretrained, write_json
from geodiff.training.export import model_with_ema, training_record
from geodiff.training.optim import check_lr_schedule, optimizer_config

__all__ = ["DiffusionModule", "VALIDATION_SEED"]

VALIDATION_SEED = 1000  # validation batch i draws its timesteps and noise from seed 1000 + i, every epoch


class DiffusionModule(L.LightningModule):
    """Base of the family modules (see the module docstring).

    Args:
        model: the denoiser (trained; its EMA copy is what validation samples with and what is exported).
        lr, weight_decay, amsgrad: Adam.
        ema_decay: EMA decay of the exported weights (warm-up for a fresh model, plain for a warm start).
        init_from: an exported model folder (or shipped name) to warm-start from; its lineage is kept.
        lr_schedule, lr_decay_steps, lr_min_ratio: ``constant`` or ``cosine`` (see ``training.optim``).
        val_sample_every_n_epochs: sample with the EMA model every this many epochs (0: never).
    """

    FAMILY: str = ""
    PROGRESS: tuple[str, ...] = ()  # sample metrics shown in the progress bar

    def __init__(self, model: torch.nn.Module, lr: float = 5e-4, weight_decay: float = 0.0,
                 amsgrad: bool = False, ema_decay: float = 0.999, init_from: str | None = None,
                 lr_schedule: str = "constant", lr_decay_steps: int | None = None,
                 lr_min_ratio: float = 0.05, val_sample_every_n_epochs: int = 0):  # fmt: skip
        super().__init__()
        check_lr_schedule(lr_schedule, lr_decay_steps, lr_min_ratio)
        # the subclass's arguments too (Lightning collects the whole chain of __init__ calls)
        self.save_hyperparameters(ignore=["model", "scheduler"])
        self.model = model
        self.ema, self.parent_training = model_with_ema(model, ema_decay, init_from)

    # ------------------------------------------------------------------ what a family supplies
    def loss(self, model: torch.nn.Module, batch, generator: torch.Generator | None = None) -> dict:
        """The training objective of ``model`` on ``batch``: ``{"loss": scalar, other terms...}``."""
        raise NotImplementedError

    def batch_size(self, batch) -> int:
        """How many samples (molecules, systems, pairs) ``batch`` holds, for logging."""
        return int(batch.num_graphs)

    def batch_device(self, batch) -> torch.device:
        return self.device

    def sample_metrics(self, batch, batch_idx: int) -> dict[str, float] | None:
        """Metrics of sampling with ``self.ema.module`` on a validation batch (called on the batches and
        epochs :meth:`should_sample` selects); None: nothing to log."""
        return None

    def export_schedulers(self) -> dict:
        """The schedulers to export, keyed by their folder name: ``scheduler`` (``self.scheduler_``) unless
        the family has several (``scheduler_pos`` ...)."""
        return {"scheduler": self.scheduler_}

    def describe(self) -> dict:
        """What the export and the Lightning checkpoint carry besides weights (JSON-serialisable): the data
        record ``self.data_info`` unless the family needs more."""
        return {"data": self.data_info}

    def restore(self, meta: dict) -> None:
        """Take back what :meth:`describe` wrote into a Lightning checkpoint (resume)."""
        self.data_info = meta.get("data", {})

    def run_notes(self) -> dict:
        """Family-specific entries of the export's run record (e.g. loss weights)."""
        return {}

    def export_extras(self, directory: Path) -> None:
        """Write family-specific files into an export folder (e.g. the training SMILES); none by default."""

    # ------------------------------------------------------------------ training and validation
    def training_step(self, batch, batch_idx):
        out = self.loss(self.model, batch)
        n = self.batch_size(batch)
        if len(out) > 1:
            self.log_dict({f"train/{k}": v for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"], prog_bar=True, batch_size=n)
        return out["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(self.model)

    def should_sample(self, batch_idx: int, every_batch: bool = False) -> bool:
        """Whether validation samples on this batch: every ``val_sample_every_n_epochs`` epochs, not in
        Lightning's sanity check, on the first batch only unless ``every_batch``."""
        every = self.hparams.get("val_sample_every_n_epochs", 0)
        if not every or self.trainer.sanity_checking or (self.current_epoch + 1) % every:
            return False
        return every_batch or batch_idx == 0

    def validation_step(self, batch, batch_idx):
        # the same timesteps and noise every epoch (per process under DDP: each sees other batches)
        g = torch.Generator(device=self.batch_device(batch)).manual_seed(VALIDATION_SEED + batch_idx)
        out = self.loss(self.ema.module, batch, generator=g)
        n = self.batch_size(batch)
        if len(out) > 1:
            self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=n, sync_dist=True)
        self.log("val_loss", out["loss"], prog_bar=True, batch_size=n, sync_dist=True)
        scores = self.sample_metrics(batch, batch_idx)
        if scores:
            self.ema.module.train(self.model.training)
            for k, v in scores.items():
                self.log(f"val/{k}", float(v), prog_bar=k in self.PROGRESS, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.Adam(self.model.parameters(), lr=h.lr, weight_decay=h.get("weight_decay", 0.0),
                               amsgrad=h.get("amsgrad", False))  # fmt: skip
        return optimizer_config(opt, h.lr_schedule, self.trainer, h.lr_decay_steps, h.lr_min_ratio)

    # ------------------------------------------------------------------ checkpoints and export
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geodiff"] = self.describe()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("geodiff")
        if meta:
            self.restore(meta)

    def export_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the EMA model, the schedulers and ``<FAMILY>.json`` into ``directory`` (atomically per
        file); ``extra`` (the run record: command, hardware, ...) goes into its training record."""
        directory = Path(directory)
        atomic_save_pretrained(copy.deepcopy(self.ema.module).float().cpu(), directory / "model")
        for name, sched in self.export_schedulers().items():
            atomic_save_pretrained(sched, directory / name)
        self.export_extras(directory)
        training = training_record(int(self.global_step), int(self.current_epoch), extra,
                                   self.parent_training)  # fmt: skip
        meta = {"family": self.FAMILY, **self.describe(), "training": training}
        write_json(directory / f"{self.FAMILY}.json", meta)
        return directory
