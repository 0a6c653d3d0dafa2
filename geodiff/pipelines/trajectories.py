"""Sampling trajectories with a trained GeoTDM model: forecasting and unconditional generation.

    pipe = TrajectoryDiffusionPipeline.from_pretrained("checkpoints/nbody_charged_geotdm_small")
    pred = pipe.forecast(batch, num_samples=5, num_inference_steps=100)      # [K, nodes, num_target, dim]

Forecasting starts from the prior ``x_r + N(0, I)`` (``x_r`` from the model's equivariant prior over the
observed frames) and runs the reverse DDPM (ancestral, strided when fewer steps are asked for) or DDIM on
``y = x - x_r``. Unconditional generation starts from zero-CoM noise over all nodes and frames. The K
samples of every system run together as one larger batch.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from geodiff.config import resolve_checkpoint
from geodiff.data.trajectories import TrajectoryBatch
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.io import atomic_path, checkpoint_meta, save_figure
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.schedulers import E3DDIMScheduler, E3DDPMScheduler

__all__ = ["TrajectoryDiffusionPipeline", "repeat_batch", "plot_trajectories", "save_trajectories"]


def repeat_batch(b: TrajectoryBatch, k: int) -> TrajectoryBatch:
    """``k`` copies of every system, copy-major (copy ``c`` of system ``s`` is system ``c * B + s``)."""
    n, B = b.x.shape[0], b.num_graphs
    offs = torch.arange(k, device=b.x.device)
    ei = (b.edge_index.unsqueeze(0) + (offs * n).view(-1, 1, 1)).permute(1, 0, 2).reshape(2, -1)
    return TrajectoryBatch(b.x.repeat(k, 1, 1), b.h.repeat(k, 1), ei, b.edge_attr.repeat(k, 1),
                           (b.batch.unsqueeze(0) + (offs * B).view(-1, 1)).reshape(-1), B * k)  # fmt: skip


class TrajectoryDiffusionPipeline:
    def __init__(self, model: GeoTDMDenoiser, scheduler: E3DDPMScheduler, data_info: dict | None = None):
        self.model, self.scheduler, self.data_info = model.eval(), scheduler, dict(data_info or {})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> TrajectoryDiffusionPipeline:
        """Load an exported GeoTDM model: a shipped name or an export folder."""
        d = resolve_checkpoint(name_or_path)
        meta = checkpoint_meta(d, "trajectories")
        try:
            model = GeoTDMDenoiser.from_pretrained(d / "model")
            sched = E3DDPMScheduler.from_pretrained(d / "scheduler")
        except Exception as exc:
            raise GeodiffError(
                f"{d}: unreadable trajectory checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        return cls(model, sched, meta.get("data", {}))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _scheduler(self, sampler: str) -> E3DDPMScheduler | E3DDIMScheduler:
        if sampler == "ddpm":
            return E3DDPMScheduler.from_config(self.scheduler.config)
        if sampler == "ddim":
            keys = inspect.signature(E3DDIMScheduler.__init__).parameters
            return E3DDIMScheduler(**{k: v for k, v in self.scheduler.config.items() if k in keys}, eta=0.0)
        raise GeodiffValueError(f"sampler: expected ddpm or ddim, got {sampler!r}")

    def _check_batch(self, b: TrajectoryBatch, frames: int) -> None:
        c = self.model.config
        if b.x.dim() != 3 or b.x.shape[2] != c.dim or b.x.shape[1] < frames:
            raise GeodiffValueError(
                f"trajectories: need [nodes, >= {frames} frames, {c.dim}] for this model "
                f"({c.num_cond} observed + {c.num_target} predicted frames), got {list(b.x.shape)}"
            )
        if b.h.shape[1] != c.node_dim or b.edge_attr.shape[1] != c.edge_dim:
            raise GeodiffValueError(
                f"trajectories: node/edge features of size {b.h.shape[1]}/{b.edge_attr.shape[1]}, the model "
                f"was trained with {c.node_dim}/{c.edge_dim}"
            )
        if not bool(torch.isfinite(b.x[:, :frames]).all()):
            raise GeodiffValueError("trajectories: observed frames contain NaN/inf")

    @torch.no_grad()
    def _run(self, b: TrajectoryBatch, steps, sampler, generator, progress) -> torch.Tensor:
        c = self.model.config
        sched = self._scheduler(sampler)
        sched.set_timesteps(int(steps or sched.config.num_train_timesteps))
        dev, dtype = self.device, next(self.model.parameters()).dtype
        b = b.to(dev)
        x_cond = b.x[:, : c.num_cond].to(dtype) if self.model.conditional else None
        h, ea = b.h.to(dtype), b.edge_attr.to(dtype)
        shape = (b.x.shape[0], c.num_target, c.dim)
        if self.model.conditional:
            x_r = self.model.prior(x_cond, h, b.edge_index, ea, b.batch, b.num_graphs)
            y = sched._randn(shape, generator, x_r)
        else:
            x_r = torch.zeros(shape, dtype=dtype, device=dev)
            y = sched.sample_prior(shape, batch=b.batch, generator=generator, dtype=dtype, device=dev)
        batch = None if self.model.conditional else b.batch
        if sched.config.prediction_type != self.model.config.prediction:
            raise GeodiffError(f"checkpoint: the scheduler expects {sched.config.prediction_type!r} outputs, "
                               f"the model predicts {self.model.config.prediction!r}")  # fmt: skip
        key = self.model.output_key
        for t in tqdm(sched.timesteps, desc="denoising", leave=False, disable=not progress):
            out = self.model(x_r + y, t, h, b.edge_index, ea, b.batch, x_cond=x_cond)[key]
            out = out if key == "eps" else out - x_r  # the scheduler runs on y = x - x_r
            y = sched.step(out, t, y, batch=batch, generator=generator).prev_sample
        return (x_r + y).float().cpu()

    def _sample(self, b, num_samples, steps, sampler, batch_size, seed, progress, frames) -> torch.Tensor:
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise GeodiffValueError(f"num_samples: must be a positive integer, got {num_samples!r}")
        self._check_batch(b, frames)
        g = torch.Generator(device=self.device).manual_seed(int(seed)) if seed is not None else None
        # split the systems into chunks so that (chunk systems x K) stays near batch_size
        per = max(1, batch_size // num_samples)
        out = torch.empty((num_samples, b.x.shape[0], self.model.config.num_target, b.x.shape[2]))
        bar = tqdm(total=b.num_graphs, desc=f"sampling trajectories (K={num_samples}, {sampler})",
                   disable=not progress)  # fmt: skip
        for lo in range(0, b.num_graphs, per):
            hi = min(b.num_graphs, lo + per)
            nodes = (b.batch >= lo) & (b.batch < hi)
            sub = b.systems(lo, hi)
            rep = repeat_batch(sub, num_samples)
            pred = self._run(rep, steps, sampler, g, progress=False)
            out[:, nodes] = pred.view(num_samples, sub.x.shape[0], *pred.shape[1:])
            bar.update(hi - lo)
        bar.close()
        return out

    def forecast(self, batch: TrajectoryBatch, num_samples: int = 5, num_inference_steps: int | None = None,
                 sampler: Literal["ddpm", "ddim"] = "ddpm", batch_size: int = 128, seed: int | None = 0,
                 progress: bool = True) -> torch.Tensor:  # fmt: skip
        """``num_samples`` forecasts ``[K, nodes, num_target, dim]`` from the first ``num_cond`` frames of
        every system in ``batch`` (frames after them are ignored)."""
        if not self.model.conditional:
            raise GeodiffValueError("forecast: this model is unconditional (num_cond = 0); use generate()")
        return self._sample(batch, num_samples, num_inference_steps, sampler, batch_size, seed, progress,
                            self.model.config.num_cond)  # fmt: skip

    def generate(self, batch: TrajectoryBatch, num_samples: int = 1, num_inference_steps: int | None = None,
                 sampler: Literal["ddpm", "ddim"] = "ddpm", batch_size: int = 128, seed: int | None = 0,
                 progress: bool = True) -> torch.Tensor:  # fmt: skip
        """Unconditional trajectories ``[K, nodes, num_target, dim]`` for the systems (node features and
        graphs) of ``batch``; its positions are not used."""
        if self.model.conditional:
            raise GeodiffValueError("generate: this model forecasts; use forecast()")
        return self._sample(batch, num_samples, num_inference_steps, sampler, batch_size, seed, progress, 0)


def save_trajectories(path: str | os.PathLike, **arrays) -> Path:
    """Write arrays (tensors or numpy) to an npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                                      for k, v in arrays.items()})  # fmt: skip
    return Path(path)


def plot_trajectories(path: str | os.PathLike, batch: TrajectoryBatch, pred: torch.Tensor, num_cond: int,
                      systems: int = 4, title: str = "") -> Path:  # fmt: skip
    """PNG of the first ``systems`` systems (x-y plane): observed (solid), ground truth (dashed, when the
    batch holds target frames) and every generated sample (thin), one colour per node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = min(systems, batch.num_graphs)
    fig, axes = plt.subplots(1, systems, figsize=(3.6 * systems, 3.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    has_truth = batch.x.shape[1] >= num_cond + pred.shape[2]
    for s in range(systems):
        ax = axes[0, s]
        nodes = torch.nonzero(batch.batch == s).flatten()
        for k, i in enumerate(nodes.tolist()):
            col = cmap(k % 10)
            obs = batch.x[i, :num_cond, :2]
            if num_cond:
                ax.plot(obs[:, 0], obs[:, 1], "-", color=col, lw=2.2)
                ax.plot(obs[-1:, 0], obs[-1:, 1], "o", color=col, ms=4)
            if has_truth:
                gt = batch.x[i, num_cond : num_cond + pred.shape[2], :2]
                joined = torch.cat([obs[-1:], gt]) if num_cond else gt
                ax.plot(joined[:, 0], joined[:, 1], "--", color=col, lw=1.6)
            for j in range(pred.shape[0]):
                p = pred[j, i, :, :2]
                joined = torch.cat([obs[-1:], p]) if num_cond else p
                ax.plot(joined[:, 0], joined[:, 1], "-", color=col, lw=0.7, alpha=0.6)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"system {s}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "observed (thick) / ground truth (dashed) / generated (thin)", fontsize=9)
    save_figure(fig, path)
    return Path(path)
