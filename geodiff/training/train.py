"""``train(cfg)``: build data, model, module and Trainer from a composed Hydra config and fit."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

__all__ = ["train"]


def train(cfg: DictConfig):
    """Fit the experiment ``cfg`` describes; returns the fitted LightningModule."""
    from geodiff.cli import instantiate
    from geodiff.training.molecules import ExportCallback

    L.seed_everything(int(cfg.seed), workers=True)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    module = instantiate(cfg.module, model=model)
    callbacks = [
        ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, every_n_epochs=1),
        ExportCallback(str(out / "export"), every_n_epochs=int(cfg.export_every_n_epochs)),
        TQDMProgressBar(refresh_rate=int(cfg.progress_refresh_rate)),
    ]
    trainer = L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), callbacks=callbacks,
                        default_root_dir=str(out))  # fmt: skip
    trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)
    return module
