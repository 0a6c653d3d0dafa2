"""geodiff train's logger comes from the ``logger`` config group: CSV by default (what ``geodiff curves``
reads) on every machine, also where tensorboard is installed (Lightning's own default would then write
TensorBoard event files); ``trainer.logger=false`` turns logging off; a logger whose package is missing
fails in one line naming the extra."""

from pathlib import Path

import lightning.pytorch as L
import pytest
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.connectors.logger_connector import logger_connector

from geodiff.config import compose
from geodiff.errors import GeodiffError
from geodiff.training.train import _check_logger_packages, trainer_kwargs


def _cfg(tmp_path, *overrides):
    return compose("train", [f"output_dir={tmp_path}", "trainer.accelerator=cpu", "trainer.max_steps=1",
                             *overrides])  # fmt: skip


def test_csv_logger_even_where_tensorboard_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(logger_connector, "_TENSORBOARD_AVAILABLE", True)
    kwargs = trainer_kwargs(_cfg(tmp_path))
    assert kwargs["accelerator"] == "cpu" and kwargs["max_steps"] == 1
    trainer = L.Trainer(**kwargs, default_root_dir=str(tmp_path), enable_progress_bar=False)
    assert isinstance(trainer.logger, CSVLogger)
    assert Path(trainer.logger.log_dir) == tmp_path / "lightning_logs" / "version_0"


def test_logger_false_turns_logging_off_and_null_group_too(tmp_path):
    kwargs = trainer_kwargs(_cfg(tmp_path, "+trainer.logger=false"))
    assert kwargs["logger"] is False
    assert L.Trainer(**kwargs, enable_progress_bar=False).logger is None
    assert trainer_kwargs(_cfg(tmp_path, "~logger"))["logger"] is False


def test_tensorboard_and_wandb_groups_compose(tmp_path):
    tb = _cfg(tmp_path, "logger=tensorboard")
    assert tb.logger._target_.endswith("TensorBoardLogger") and tb.logger.save_dir == str(tmp_path)
    wb = _cfg(tmp_path, "logger=wandb")
    assert wb.logger._target_.endswith("WandbLogger") and wb.logger.offline is True


def test_missing_logger_package_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(GeodiffError, match=r"wandb package \(pip install geodiff\[loggers\]\)"):
        _check_logger_packages(_cfg(tmp_path, "logger=wandb"))
