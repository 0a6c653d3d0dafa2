"""``train(cfg)``: build data, model, module and Trainer from a composed Hydra config and fit.

A nonsensical override (``trainer.max_epochs=abc``, ``data.batch_size=0``, ``trainer.accelerator=tpu`` on a
machine without one, ``module.lr=abc``) surfaces as an exception from Lightning or torch while the run is
being set up, before the first training batch. Such exceptions become one-line :class:`GeodiffError` s
naming the exception and where it came from (the CLI exits 2); an exception after training has started is
a real failure and propagates with its traceback. ``GEODIFF_DEBUG=1`` re-raises setup errors unchanged.
"""

from __future__ import annotations

import os
import shlex
import traceback
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from geodiff.errors import GeodiffError, first_line

__all__ = ["train"]

_SETUP_ERRORS = (TypeError, ValueError, AssertionError, ImportError, RuntimeError, KeyError, AttributeError)


class _Started(L.Callback):
    """Records whether the first training batch has begun (errors before it are configuration errors)."""

    started = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.started = True


def _setup_error(exc: BaseException) -> GeodiffError:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    msg = first_line(exc, default=(frame.line if frame else "") or "")
    return GeodiffError(
        f"the run could not start with this configuration: {type(exc).__name__}{where}: {msg} "
        "(check the overrides; GEODIFF_DEBUG=1 shows the traceback)"
    )


def command_line(overrides: list[str]) -> str:
    """``geodiff train OVERRIDES`` as a user would type it, with the thread count when ``OMP_NUM_THREADS``
    was set; recorded in the export."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(["geodiff", "train", *overrides])


def trainer_kwargs(cfg: DictConfig, out: Path) -> dict:
    """``cfg.trainer`` as keyword arguments for ``L.Trainer``, with a CSV logger in
    ``out/lightning_logs/version_N/metrics.csv`` (what ``geodiff curves`` reads) unless the config names a
    logger: Lightning's default would switch to TensorBoard files wherever tensorboard is installed."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if kwargs.get("logger") in (None, True):
        kwargs["logger"] = CSVLogger(save_dir=str(out), name="lightning_logs")
    return kwargs


def train(cfg: DictConfig, command: str | None = None):
    """Fit the experiment ``cfg`` describes; returns the fitted LightningModule. ``command`` (the command
    line, see :func:`command_line`) goes into the export's training record."""
    from geodiff.cli import instantiate
    from geodiff.training.molecules import ExportCallback

    L.seed_everything(int(cfg.seed), workers=True)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    started = _Started()
    try:
        data = instantiate(cfg.data)
        model = instantiate(cfg.model)
        module = instantiate(cfg.module, model=model)
        callbacks = [
            ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, every_n_epochs=1),
            ExportCallback(
                str(out / "export"), every_n_epochs=int(cfg.export_every_n_epochs), command=command
            ),
            TQDMProgressBar(refresh_rate=int(cfg.progress_refresh_rate)),
            started,
        ]
        trainer = L.Trainer(**trainer_kwargs(cfg, out), callbacks=callbacks, default_root_dir=str(out))
        trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)
    except GeodiffError:
        raise
    except _SETUP_ERRORS as exc:
        if started.started or os.environ.get("GEODIFF_DEBUG"):
            raise
        raise _setup_error(exc) from exc
    return module
