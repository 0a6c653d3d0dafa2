"""geodiff train logs to CSV (what ``geodiff curves`` reads) on every machine, also where tensorboard is
installed (Lightning's default logger would then write TensorBoard event files instead)."""

from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.connectors.logger_connector import logger_connector
from omegaconf import OmegaConf

from geodiff.training.train import trainer_kwargs


def _cfg(**trainer):
    return OmegaConf.create({"trainer": {"accelerator": "cpu", "max_steps": 1, **trainer}})


def test_csv_logger_even_where_tensorboard_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(logger_connector, "_TENSORBOARD_AVAILABLE", True)
    kwargs = trainer_kwargs(_cfg(), tmp_path)
    assert kwargs["accelerator"] == "cpu" and kwargs["max_steps"] == 1
    trainer = L.Trainer(**kwargs, default_root_dir=str(tmp_path), enable_progress_bar=False)
    assert isinstance(trainer.logger, CSVLogger)
    assert Path(trainer.logger.log_dir) == tmp_path / "lightning_logs" / "version_0"


def test_logger_true_means_the_csv_logger_and_false_turns_logging_off(tmp_path):
    assert isinstance(trainer_kwargs(_cfg(logger=True), tmp_path)["logger"], CSVLogger)
    kwargs = trainer_kwargs(_cfg(logger=False), tmp_path)
    assert kwargs["logger"] is False
    assert L.Trainer(**kwargs, enable_progress_bar=False).logger is None
