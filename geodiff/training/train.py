"""``train(cfg)``: build data, model, module and Trainer from a composed Hydra config and fit.

A nonsensical override (``trainer.max_epochs=abc``, ``data.batch_size=0``, ``trainer.accelerator=tpu`` on a
machine without one, ``module.lr=abc``) surfaces as an exception from Lightning or torch while the run is
being set up, before the first training batch. Such exceptions become one-line :class:`GeodiffError` s
naming the exception and where it came from (the CLI exits 2); an exception after training has started is
a real failure and propagates with its traceback. ``GEODIFF_DEBUG=1`` re-raises setup errors unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import traceback
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from geodiff.config import instantiate
from geodiff.errors import GeodiffError, first_line
from geodiff.io import atomic_path
from geodiff.training.callbacks import ExportCallback, RankSeed

__all__ = ["command_line", "make_callbacks", "train", "trainer_kwargs"]

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


def trainer_kwargs(cfg: DictConfig) -> dict:
    """``cfg.trainer`` as keyword arguments for ``L.Trainer``, with the logger of the ``logger`` group (CSV
    by default: ``lightning_logs/version_N/metrics.csv``, what ``geodiff curves`` reads);
    ``trainer.logger=false`` turns logging off."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if kwargs.get("logger") is False:
        return kwargs
    kwargs.pop("logger", None)
    logger_cfg = cfg.get("logger")
    kwargs["logger"] = instantiate(logger_cfg) if logger_cfg else False
    return kwargs


def make_callbacks(cfg: DictConfig, command: str | None) -> list[L.Callback]:
    """The callbacks of the ``callbacks`` group (each entry a ``_target_``; null entries are skipped), the
    export callback given the command line, and geodiff's own: per-process seeds and the start marker."""
    callbacks = []
    for name, c in (cfg.get("callbacks") or {}).items():
        if c is None:
            continue
        if not isinstance(c, DictConfig) or "_target_" not in c:
            raise GeodiffError(f"callbacks.{name}: needs a _target_ (a Lightning callback class)")
        cb = instantiate(c)
        if isinstance(cb, ExportCallback) and cb.command is None:
            cb.command = command
        callbacks.append(cb)
    return [*callbacks, RankSeed(int(cfg.seed))]


def _check_logger_packages(cfg: DictConfig) -> None:
    """One line naming the package a logger needs, before Lightning's longer message."""
    target = str(OmegaConf.select(cfg, "logger._target_") or "")
    need = {"TensorBoardLogger": ("tensorboard", "tensorboardX"), "WandbLogger": ("wandb",)}
    for cls, modules in need.items():
        if target.endswith(cls) and not any(importlib.util.find_spec(m) for m in modules):
            raise GeodiffError(f"logger: {cls} needs the {modules[0]} package (pip install geodiff[loggers])")


def _check_ckpt_path(path) -> None:
    """One line for a ``ckpt_path`` that is not a checkpoint, before any data is read."""
    import zipfile

    if path in (None, ""):
        return
    p = Path(path)
    if not p.is_file():
        raise GeodiffError(
            f"ckpt_path: {p} not found (a Lightning .ckpt: <output_dir>/checkpoints/last.ckpt)"
        )
    if not zipfile.is_zipfile(p):
        raise GeodiffError(f"ckpt_path: {p} is not a Lightning checkpoint (torch.save's zip format)")


def train(cfg: DictConfig, command: str | None = None):
    """Fit the experiment ``cfg`` describes; returns the fitted LightningModule. ``command`` (the command
    line, see :func:`command_line`) goes into the export's training record."""
    _check_ckpt_path(cfg.get("ckpt_path"))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(OmegaConf.to_yaml(cfg))
    _check_logger_packages(cfg)
    started = _Started()
    try:
        data = instantiate(cfg.data)
        model = instantiate(cfg.model)
        module = instantiate(cfg.module, model=model)
        callbacks = [*make_callbacks(cfg, command), started]
        kwargs = trainer_kwargs(cfg)
        if getattr(data, "shards_itself", False):  # its batch sampler splits batches between processes
            kwargs["use_distributed_sampler"] = False
        trainer = L.Trainer(**kwargs, callbacks=callbacks, default_root_dir=str(out))
        trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)
    except GeodiffError:
        raise
    except _SETUP_ERRORS as exc:
        if started.started or os.environ.get("GEODIFF_DEBUG"):
            raise
        raise _setup_error(exc) from exc
    return module
