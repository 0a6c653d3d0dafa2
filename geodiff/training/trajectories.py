"""Lightning training of GeoTDM: trajectory data module, diffusion module (eps-MSE, Adam, EMA), export.

Data sets: ``nbody`` (a folder with ``train.npz``/``val.npz``/``test.npz`` written by ``geodiff data nbody``;
simulated on the spot when the folder does not exist, so the default needs nothing from outside),
``md17`` (an sGDML npz, chronological split) and ``eth_ucy`` (a leave-one-scene-out folder and a scene).

Training objective (GeoTDM): with prior mean ``x_r`` (zero-CoM Gaussian for unconditional models),
``x_tau = x_r + sqrt(abar)(x_0 - x_r) + sqrt(1 - abar) eps`` and the loss is ``|eps_theta - eps|^2``; the
learnable prior is trained through the same loss. ``export_pretrained`` writes the EMA model (safetensors),
the scheduler config and ``trajectories.json`` (what the data were, so sampling can rebuild systems).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader

from geodiff.data.trajectories import (
    TrajectoryBatch,
    TrajectoryDataset,
    collate_trajectories,
    load_eth_ucy,
    load_md17_npz,
    load_nbody_npz,
)
from geodiff.errors import GeodiffError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.schedulers import E3DDPMScheduler
from geodiff.training.export import ExportMixin
from geodiff.training.optim import check_lr_schedule, optimizer_config

__all__ = ["TrajectoryDataModule", "TrajectoryDiffusionModule", "make_scheduler", "generate_nbody_split",
           "trajectory_loss"]  # fmt: skip


def make_scheduler(num_train_timesteps: int = 1000, conditional: bool = True, beta_start: float = 1e-4,
                   beta_end: float = 0.02, prediction_type: str = "epsilon") -> E3DDPMScheduler:  # fmt: skip
    """GeoTDM's DDPM: linear betas 1e-4..0.02, eps-prediction (or x0: ``prediction_type="sample"``);
    zero-CoM noise only when unconditional."""
    return E3DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear",
                           beta_start=beta_start, beta_end=beta_end, prediction_type=prediction_type,
                           variance_type="fixed_small", center_of_mass=not conditional)  # fmt: skip


def generate_nbody_split(folder: str | os.PathLike, kind: str = "charged", num_train: int = 3000,
                         num_val: int = 500, num_test: int = 500, seed: int = 0,
                         num_particles: int | None = None,
                         progress: bool = True) -> Path:  # fmt: skip
    """Simulate train/val/test N-body files into ``folder`` (independent seeds ``seed``, +1, +2)."""
    from dataclasses import replace

    from geodiff.data.nbody import DEFAULTS, simulate
    from geodiff.data.trajectories import save_nbody_npz

    if kind not in DEFAULTS:
        raise GeodiffError(f"kind: unknown N-body system {kind!r} (charged, springs or gravity)")
    cfg = (
        DEFAULTS[kind] if num_particles is None else replace(DEFAULTS[kind], num_particles=int(num_particles))
    )
    folder = Path(folder)
    for k, (split, n) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        if n <= 0:
            raise GeodiffError(f"num_{split}: need at least one simulation, got {n}")
        sim = simulate(int(n), cfg, seed=seed + k, progress=progress)
        save_nbody_npz(
            sim, folder / f"{split}.npz", kind, seed=seed + k, dt=cfg.dt, sample_freq=cfg.sample_freq
        )
        if progress:
            print(f"wrote {folder / f'{split}.npz'} ({n} {kind} systems, {sim['loc'].shape[1]} frames)")
    return folder


def trajectory_loss(model: GeoTDMDenoiser, batch: TrajectoryBatch, scheduler: E3DDPMScheduler,
                    generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """GeoTDM's denoising loss on one batch: mean squared error of the predicted noise, or of the predicted
    clean targets for ``prediction="sample"`` models."""
    c = model.config
    x = batch.x
    x_cond, x0 = x[:, : c.num_cond], x[:, c.num_cond :]
    B, dev = batch.num_graphs, x.device
    t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), device=dev, generator=generator)
    noise = torch.randn(x0.shape, device=dev, dtype=x0.dtype, generator=generator)
    key = model.output_key
    if model.conditional:
        x_r = model.prior(x_cond, batch.h, batch.edge_index, batch.edge_attr, batch.batch, B)
        x_t = x_r + scheduler.add_noise(x0 - x_r, noise, t, batch=batch.batch)
        target = noise if key == "eps" else x0
        pred = model(x_t, t, batch.h, batch.edge_index, batch.edge_attr, batch.batch, x_cond=x_cond)[key]
    else:
        x_t = scheduler.add_noise(x0, noise, t, batch=batch.batch)
        target = scheduler.project(noise if key == "eps" else x0, batch.batch)
        pred = scheduler.project(
            model(x_t, t, batch.h, batch.edge_index, batch.edge_attr, batch.batch)[key], batch.batch
        )
    return ((pred - target) ** 2).mean()


class TrajectoryDataModule(L.LightningDataModule):
    """Trajectories for GeoTDM: ``dataset`` = ``nbody`` | ``md17`` | ``eth_ucy`` (see the module docstring).

    Args:
        path: N-body folder, MD17 npz or ETH-UCY root.
        num_cond, num_target: observed and predicted frames (unconditional: ``num_cond=0``).
        kind, num_train, num_val, num_test, sim_seed: N-body simulation when ``path`` does not exist.
        frame_offset: first N-body frame of the window.
        scene: ETH-UCY test scene (leave-one-out); stride, window_step: MD17 frame subsampling.
        limit: use at most this many training systems (CPU smoke runs).
    """

    def __init__(self, dataset: str = "nbody", path: str = "data/nbody_charged", num_cond: int = 10,
                 num_target: int = 20, kind: str = "charged", num_train: int = 3000, num_val: int = 500,
                 num_test: int = 500, sim_seed: int = 0, frame_offset: int = 0, scene: str = "eth",
                 stride: int = 10, window_step: int | None = None, limit: int | None = None,
                 val_limit: int | None = None, batch_size: int = 128, num_workers: int = 0):  # fmt: skip
        super().__init__()
        if dataset not in ("nbody", "md17", "eth_ucy"):
            raise GeodiffError(f"data.dataset: expected nbody, md17 or eth_ucy, got {dataset!r}")
        self.dataset, self.path, self.num_cond, self.num_target = dataset, path, num_cond, num_target
        self.kind, self.num_train, self.num_val, self.num_test, self.sim_seed = (
            kind, num_train, num_val, num_test, sim_seed)  # fmt: skip
        self.frame_offset, self.scene, self.stride, self.window_step = (
            frame_offset,
            scene,
            stride,
            window_step,
        )
        self.limit, self.val_limit, self.batch_size, self.num_workers = (
            limit,
            val_limit,
            batch_size,
            num_workers,
        )
        self._splits: dict[str, TrajectoryDataset] = {}

    @classmethod
    def from_record(cls, info: dict, path: str | None = None) -> TrajectoryDataModule:
        """The data module an export's data record (:meth:`describe`) describes, reading ``path`` instead
        of the recorded path when given: sampling cuts its windows exactly as training did."""
        dataset = info.get("dataset")
        if dataset not in ("nbody", "md17", "eth_ucy"):
            raise GeodiffError(f"checkpoint: unknown trajectory data set {dataset!r}")
        kw = {
            "dataset": dataset,
            "path": str(path or info.get("path")),
            "num_cond": int(info.get("num_cond", 0)),
            "num_target": int(info.get("num_target", 0)),
            "frame_offset": int(info.get("frame_offset") or 0),
        }
        # recorded only for their own data set; exports from before a field was recorded get the default
        for key in ("kind", "scene", "stride", "window_step"):
            if info.get(key) is not None:
                kw[key] = info[key]
        return cls(**kw)

    def load_split(self, name: str, limit: int | None = None) -> TrajectoryDataset:
        """Read the ``train``, ``val`` or ``test`` split (at most ``limit`` windows) from ``path``; an N-body
        ``path`` may also be a single npz, read whatever ``name``."""
        if self.dataset == "nbody":
            p = Path(self.path)
            return load_nbody_npz(p / f"{name}.npz" if p.is_dir() else p, self.num_cond, self.num_target,
                                  self.frame_offset, limit)  # fmt: skip
        if self.dataset == "md17":
            return load_md17_npz(self.path, name, self.num_cond, self.num_target, self.stride,
                                 self.window_step, limit=limit)  # fmt: skip
        return load_eth_ucy(self.path, self.scene, name, self.num_cond, self.num_target, limit=limit)

    def split(self, name: str) -> TrajectoryDataset:
        """The ``train``, ``val`` or ``test`` data set (loaded once)."""
        if name not in self._splits:
            if self.dataset == "nbody":
                folder = Path(self.path)
                if folder.is_file():
                    raise GeodiffError(f"data.path: {folder} is a file; training reads an N-body folder "
                                       "of train/val/test.npz (geodiff data nbody)")  # fmt: skip
                if not folder.exists():
                    print(f"data: {folder} does not exist; simulating {self.kind} systems into it")
                    generate_nbody_split(folder, self.kind, self.num_train, self.num_val, self.num_test,
                                         self.sim_seed)  # fmt: skip
            self._splits[name] = self.load_split(name, self.limit if name == "train" else self.val_limit)
        return self._splits[name]

    def describe(self) -> dict:
        ds = self.split("train")
        return {"dataset": self.dataset, "name": ds.name,
                "kind": self.kind if self.dataset == "nbody" else None,
                "scene": self.scene if self.dataset == "eth_ucy" else None, "path": str(self.path),
                "stride": self.stride if self.dataset == "md17" else None,
                "window_step": self.window_step if self.dataset == "md17" else None,
                "num_cond": self.num_cond, "num_target": self.num_target, "dim": ds.dim,
                "node_dim": ds.node_dim, "edge_dim": ds.edge_dim, "num_train": len(ds),
                "frame_offset": self.frame_offset}  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        self.split("train")
        self.split("val")

    def _loader(self, ds, shuffle):
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate_trajectories,
                          num_workers=self.num_workers)  # fmt: skip

    def train_dataloader(self):
        return self._loader(self.split("train"), True)

    def val_dataloader(self):
        return self._loader(self.split("val"), False)


class TrajectoryDiffusionModule(ExportMixin, L.LightningModule):
    """GeoTDM training: eps-MSE (or x0-MSE) under DDPM (linear betas), Adam, EMA weights; validation
    ADE/FDE of forecasts."""

    FAMILY = "trajectories"

    def __init__(self, model: GeoTDMDenoiser, num_train_timesteps: int = 1000, lr: float = 5e-4,
                 weight_decay: float = 0.0, ema_decay: float = 0.999, val_sample_every_n_epochs: int = 0,
                 val_num_systems: int = 64, val_sampling_steps: int = 100,
                 init_from: str | None = None, lr_schedule: str = "constant",
                 lr_decay_steps: int | None = None, lr_min_ratio: float = 0.05):  # fmt: skip
        super().__init__()
        check_lr_schedule(lr_schedule, lr_decay_steps, lr_min_ratio)
        self.save_hyperparameters(ignore=["model"])
        self._set_model(model, ema_decay, init_from)
        self.scheduler_ = make_scheduler(num_train_timesteps, conditional=model.conditional,
                                         prediction_type=model.config.prediction)  # fmt: skip
        self.data_info: dict = {}

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        info = dm.describe()
        c = self.model.config
        want = {"num_cond": info["num_cond"], "num_target": info["num_target"], "dim": info["dim"],
                "node_dim": info["node_dim"], "edge_dim": info["edge_dim"]}  # fmt: skip
        have = {k: c[k] for k in want}
        if want != have:
            diff = ", ".join(f"model.{k}={want[k]}" for k in want if want[k] != have[k])
            raise GeodiffError(f"model does not fit the data ({info['name']}): set {diff}")
        self.data_info = info

    def training_step(self, batch, batch_idx):
        loss = trajectory_loss(self.model, batch, self.scheduler_)
        self.log("loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(self.model)

    def validation_step(self, batch, batch_idx):
        g = torch.Generator(device=batch.x.device).manual_seed(1000 + batch_idx)
        loss = trajectory_loss(self.ema.module, batch, self.scheduler_, generator=g)
        self.log("val_loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        every = self.hparams.val_sample_every_n_epochs
        if (every and batch_idx == 0 and not self.trainer.sanity_checking
                and (self.current_epoch + 1) % every == 0 and self.model.conditional):  # fmt: skip
            from geodiff.metrics.trajectories import displacement_errors
            from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

            n = self.hparams.val_num_systems
            sub = batch.systems(0, n)
            pipe = TrajectoryDiffusionPipeline(self.ema.module, self.scheduler_, self.data_info)
            pred = pipe.forecast(sub, num_samples=1, num_inference_steps=self.hparams.val_sampling_steps,
                                 seed=0, progress=False)  # fmt: skip
            self.ema.module.train(self.model.training)
            err = displacement_errors(pred, sub.x[:, self.model.config.num_cond :])
            self.log("val/ade", err["ade"], prog_bar=True, batch_size=sub.num_graphs)
            self.log("val/fde", err["fde"], batch_size=sub.num_graphs)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.Adam(self.model.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        return optimizer_config(opt, h.lr_schedule, self.trainer, h.lr_decay_steps, h.lr_min_ratio)


def systems_for_sampling(info: dict, data: str | None = None, split: str = "test",
                         num_systems: int | None = None,
                         seed: int = 0) -> TrajectoryDataset:  # fmt: skip
    """The systems to forecast (or to take node features and graphs from, for unconditional models).

    ``data`` may be an N-body npz or folder, an MD17 npz or an ETH-UCY root (the kind the model was trained
    on); with ``data=None`` an N-body model gets ``num_systems`` freshly simulated systems (``seed``) and
    the others read the ``split`` of the data they were trained on.
    """
    import tempfile

    from geodiff.data.nbody import simulate
    from geodiff.data.trajectories import save_nbody_npz

    dm = TrajectoryDataModule.from_record(info, data)  # the windows exactly as training cut them
    frames = dm.num_cond + dm.num_target
    if dm.dataset == "nbody" and data is None:
        kind = info.get("kind") or "charged"
        sim = simulate(int(num_systems or 100), kind, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            dm.path = str(save_nbody_npz(sim, Path(tmp) / "fresh.npz", kind))
            ds = dm.load_split(split)
        ds.source = f"{len(ds)} freshly simulated {kind} systems (seed {seed})"
    else:
        ds = dm.load_split(split, num_systems)
    if ds.num_frames < frames:
        raise GeodiffError(f"{ds.source}: {ds.num_frames} frames, the model needs {frames}")
    if num_systems is not None and len(ds) > num_systems:
        ds.samples = ds.samples[:num_systems]
    return ds
