"""Sampling trajectories with a trained GeoTDM model: forecasting and unconditional generation.

    pipe = TrajectoryDiffusionPipeline.from_pretrained("nbody_charged_geotdm_small")
    out = pipe(observed, charges=q, num_samples=5, generator=torch.Generator().manual_seed(0))
    out.trajectories                                           # [K, nodes, num_target, dim]

``observed`` is one system's positions ``[nodes, frames, dim]`` (or a list of them, or a collated
:class:`TrajectoryBatch`); the export says which node features the model reads and
:func:`geodiff.data.trajectories.make_system` builds them from what the call passes (``charges=`` for
charged particles, ``atomic_numbers=`` for MD17, nothing for pedestrians). Forecasting starts from the prior
``x_r + N(0, I)`` (``x_r`` from the model's equivariant prior over the observed frames) and runs the reverse
DDPM (ancestral, strided when fewer steps are asked for) or DDIM on ``y = x - x_r``. Unconditional
generation starts from zero-CoM noise over all nodes and frames (``observed`` then gives the systems' node
features and sizes; its positions are not read). The K samples of every system run together as one larger
batch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from geodiff.data.trajectories import TrajectoryBatch, collate_trajectories, make_system
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.io import atomic_path, output_and_picture, save_figure
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.pipelines.base import GeodiffPipeline
from geodiff.pipelines.sharding import Shard
from geodiff.schedulers import E3DDPMScheduler, E3FlowMatchScheduler, convert, load_scheduler, rescale

__all__ = ["TrajectoryDiffusionPipeline", "TrajectoryPipelineOutput", "forecast_and_score",
           "format_forecast_report", "plot_trajectories", "repeat_batch", "save_trajectories"]  # fmt: skip


def repeat_batch(b: TrajectoryBatch, k: int) -> TrajectoryBatch:
    """``k`` copies of every system, copy-major (copy ``c`` of system ``s`` is system ``c * B + s``)."""
    n, B = b.x.shape[0], b.num_graphs
    offs = torch.arange(k, device=b.x.device)
    ei = (b.edge_index.unsqueeze(0) + (offs * n).view(-1, 1, 1)).permute(1, 0, 2).reshape(2, -1)
    return TrajectoryBatch(b.x.repeat(k, 1, 1), b.h.repeat(k, 1), ei, b.edge_attr.repeat(k, 1),
                           (b.batch.unsqueeze(0) + (offs * B).view(-1, 1)).reshape(-1), B * k)  # fmt: skip


@dataclass
class TrajectoryPipelineOutput:
    """Sampled trajectories.

    Attributes:
        trajectories: ``[K, nodes, num_target, dim]``: K samples of the predicted frames of every node.
        systems: the systems they continue (observed frames first; ground truth after them when given).
        num_cond: observed frames per system (0 for unconditional generation).
    """

    trajectories: torch.Tensor
    systems: TrajectoryBatch
    num_cond: int

    def save(self, path: str | os.PathLike, **extra) -> Path:
        """An npz (atomically) with ``pred``, ``batch``, ``h``, ``num_cond``, the observed frames and, where
        the systems hold them, the true future frames; ``extra`` arrays are added."""
        b, c, t = self.systems, self.num_cond, self.trajectories.shape[2]
        arrays = {"pred": self.trajectories, "batch": b.batch, "h": b.h, "num_cond": c, **extra}
        if c:
            arrays["observed"] = b.x[:, :c]
            if b.x.shape[1] >= c + t:
                arrays["truth"] = b.x[:, c : c + t]
        else:
            arrays["reference"] = b.x[:, :t]
        return save_trajectories(path, **arrays)

    def plot(self, path: str | os.PathLike, systems: int = 4, title: str = "") -> Path:
        """PNG of the first ``systems`` systems (see :func:`plot_trajectories`)."""
        return plot_trajectories(path, self.systems, self.trajectories, self.num_cond, systems, title)


class TrajectoryDiffusionPipeline(GeodiffPipeline):
    """GeoTDM sampling (see the module docstring). ``data_info``: the export's record of its training data
    (which features the model reads, how windows were cut)."""

    FAMILY = "trajectories"
    MODEL = GeoTDMDenoiser

    def __init__(self, model: GeoTDMDenoiser, scheduler: E3DDPMScheduler, data_info: dict | None = None):
        self.model, self.scheduler, self.data_info = model.eval(), scheduler, dict(data_info or {})

    @classmethod
    def _from_export(cls, model, directory, meta):
        sched = load_scheduler(directory / "scheduler", E3DDPMScheduler, E3FlowMatchScheduler)
        return cls(model, sched, meta.get("data", {}))

    def systems(self, observed, **features) -> TrajectoryBatch:
        """``observed`` as a batch: a :class:`TrajectoryBatch` as it is, or one system's positions
        ``[nodes, frames, dim]`` (or a list of them) with the features the model needs (``make_system``;
        for a list, each feature is a list too)."""
        if isinstance(observed, TrajectoryBatch):
            if features:
                raise GeodiffValueError(f"{', '.join(features)}: a TrajectoryBatch carries its own features")
            return observed
        single = np.ndim(observed[0]) == 2 if isinstance(observed, Sequence) and len(observed) else True
        items = [observed] if single else list(observed)
        per = [{k: (v if single else v[i]) for k, v in features.items()} for i in range(len(items))]
        made = [make_system(self.data_info, x, **f) for x, f in zip(items, per, strict=True)]
        return collate_trajectories(made)

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

    def sampling_scheduler(self, sampler: str | None = None, num_inference_steps: int | None = None,
                           variance_type: str | None = None, schedule: str = "strided"):  # fmt: skip
        """The scheduler one call samples with (a new one: ``pipe.scheduler`` is never changed)."""
        sched = self.with_sampler(self.scheduler, sampler)
        if variance_type is not None:
            if not isinstance(sched, E3DDPMScheduler):
                raise GeodiffValueError(f"variance_type: a DDPM option; {type(sched).__name__} adds no noise")
            sched = convert(sched, E3DDPMScheduler, variance_type=variance_type)
        if schedule == "rescaled":
            return rescale(sched, int(num_inference_steps or sched.config.num_train_timesteps))
        if schedule != "strided":
            raise GeodiffValueError(f"schedule: expected strided or rescaled, got {schedule!r}")
        return type(sched).from_config(sched.config) if sched is self.scheduler else sched

    @torch.no_grad()
    def _run(self, b: TrajectoryBatch, sched, steps, generator, progress, noise=None) -> torch.Tensor:
        """Forecasts ``[nodes, num_target, dim]`` of one batch; ``noise``: the initial draw (default: from
        ``generator``), e.g. rotated with the input to test sample equivariance."""
        c = self.model.config
        sched.set_timesteps(int(steps or sched.config.num_train_timesteps))
        dev, dtype = self.device, self.dtype
        b = b.to(dev)
        x_cond = b.x[:, : c.num_cond].to(dtype) if self.model.conditional else None
        h, ea = b.h.to(dtype), b.edge_attr.to(dtype)
        shape = (b.x.shape[0], c.num_target, c.dim)
        if self.model.conditional:  # noise around the prior mean (a conditional scheduler is not zero-CoM)
            x_r = self.model.prior(x_cond, h, b.edge_index, ea, b.batch, b.num_graphs)
            y = sched.sample_prior(shape, generator=generator, dtype=dtype, device=dev)
            y = y if noise is None else noise.to(dev, dtype)
        else:
            x_r = torch.zeros(shape, dtype=dtype, device=dev)
            y = sched.sample_prior(shape, batch=b.batch, generator=generator, dtype=dtype, device=dev)
        batch = None if self.model.conditional else b.batch
        if sched.config.prediction_type != self.model.config.prediction:
            raise GeodiffError(f"checkpoint: the scheduler expects {sched.config.prediction_type!r} outputs, "
                               f"the model predicts {self.model.config.prediction!r}")  # fmt: skip
        key = self.model.output_key
        for t in self.progress_bar(progress, iterable=sched.timesteps, desc="denoising", leave=False):
            out = self.model(x_r + y, t, h, b.edge_index, ea, b.batch, x_cond=x_cond)[key]
            out = out if key == "eps" else out - x_r  # the scheduler runs on y = x - x_r
            y = sched.step(out, t, y, batch=batch, generator=generator).prev_sample
        return (x_r + y).float().cpu()

    def __call__(
        self,
        observed,
        num_samples: int = 5,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        sampler: Literal["ddpm", "ddim"] | None = None,
        batch_size: int = 128,
        progress: bool | None = None,
        variance_type: Literal["fixed_small", "fixed_large"] | None = None,
        schedule: Literal["strided", "rescaled"] = "strided",
        input_scale: float = 1.0,
        **features,
    ) -> TrajectoryPipelineOutput:
        """``num_samples`` forecasts of the frames after the first ``num_cond`` of every system in
        ``observed`` (later frames are ignored), or, for an unconditional model, ``num_samples`` trajectories
        of its systems. ``features``: what :meth:`systems` needs to build systems from arrays.
        ``sampler``: ``ddpm`` or ``ddim`` for this call (None: ``pipe.scheduler`` as it is).

        GeoTDM's reference sampler, as options: ``variance_type="fixed_large"`` (DDPM noise of variance
        beta_t rather than the posterior's; the reference's FIXED_LARGE) and ``schedule="rescaled"`` (with
        ``num_inference_steps`` below T, a new ``num_inference_steps``-step schedule with the betas scaled by
        ``T / steps``, the denoiser fed ``t`` in ``0 .. steps - 1``, as the reference's sampler does;
        :func:`geodiff.schedulers.rescale`). The default ``strided`` runs a subset of the T training steps.
        ``input_scale``: the model forecasts from positions divided by it and its forecasts are multiplied
        back (GeoTDM's ETH-UCY test protocol, after EqMotion: 1.4; the returned systems keep their units)."""
        self.check_call(num_inference_steps, sampler, num_samples=num_samples, batch_size=batch_size)
        b = self.systems(observed, **features)
        c = self.model.config
        self._check_batch(b, c.num_cond)
        sched = self.sampling_scheduler(sampler, num_inference_steps, variance_type, schedule)
        if not (isinstance(input_scale, (int, float)) and input_scale > 0):
            raise GeodiffValueError(f"input_scale: must be a positive number, got {input_scale!r}")
        g = self.generator(generator, seed, device=self.device)
        # split the systems into chunks so that (chunk systems x K) stays near batch_size
        per = max(1, batch_size // num_samples)
        out = torch.empty((num_samples, b.x.shape[0], c.num_target, b.x.shape[2]))
        desc = f"sampling trajectories (K={num_samples}, {type(sched).__name__})"
        bar = self.progress_bar(progress, total=b.num_graphs, desc=desc)
        for lo in range(0, b.num_graphs, per):
            hi = min(b.num_graphs, lo + per)
            nodes = (b.batch >= lo) & (b.batch < hi)
            sub = b.systems(lo, hi)
            if input_scale != 1:
                sub = dataclasses.replace(sub, x=sub.x / input_scale)
            pred = self._run(repeat_batch(sub, num_samples), sched, num_inference_steps, g, progress=False)
            out[:, nodes] = input_scale * pred.view(num_samples, sub.x.shape[0], *pred.shape[1:])
            bar.update(hi - lo)
        bar.close()
        return TrajectoryPipelineOutput(out, b, c.num_cond)


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


def forecast_and_score(pipe: TrajectoryDiffusionPipeline, observed, num_samples: int = 5,
                       output: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
                       source: str = "", shard: Shard | None = None, min_over: str = "node",
                       **sample_kwargs) -> dict | None:  # fmt: skip
    """Forecast (or generate) ``num_samples`` trajectories of the systems in ``observed``, score forecasts
    against the true frames when the systems hold them (ADE/FDE avg and min of K, and constant velocity on the
    same observed frames), write the npz (``output``) and a PNG (``plot``, default beside it): what
    ``geodiff sample``, ``make demo`` and ``sampling/forecast_nbody.py`` share. Returns ``{"output",
    "seconds", "steps", "sampler", "variance_type", "schedule", "min_over", "errors", "constant_velocity",
    "npz", "png", "source", "processes"}``. ``min_over``: min of K per ``node`` (each agent its best sample)
    or per ``system`` (one sample for the whole system, GeoTDM's N-body protocol).

    ``shard`` (:class:`~geodiff.pipelines.sharding.Shard`): this process forecasts its share of the systems
    with seed ``seed + rank``; rank 0 merges, scores, writes and returns the report (other ranks: None)."""
    import time

    from geodiff.metrics.trajectories import constant_velocity, displacement_errors

    shard = shard or Shard()
    if min_over not in ("node", "system"):
        raise GeodiffValueError(f"min_over: {min_over!r} is not one of node, system")
    png = output_and_picture(output, plot, "plot", ".npz")  # checked before any sampling
    shard.check_seeded(sample_kwargs)
    t0 = time.time()
    mine = observed
    if shard.world_size > 1:
        if not isinstance(observed, TrajectoryBatch):
            raise GeodiffValueError("observed: sampling on several processes takes a TrajectoryBatch")
        mine = observed.systems(*shard.range(observed.num_graphs, "systems"))
        sample_kwargs["seed"] = shard.seed(sample_kwargs.get("seed"))
    out = pipe(mine, num_samples=num_samples, **sample_kwargs)
    if shard.world_size > 1:
        parts = shard.gather(out.trajectories.cpu())
        if parts is None:
            return None
        out = TrajectoryPipelineOutput(torch.cat(parts, dim=1), observed.to("cpu"), out.num_cond)
    seconds = time.time() - t0
    c, b = pipe.model.config, out.systems
    steps = sample_kwargs.get("num_inference_steps") or pipe.scheduler.config.num_train_timesteps
    kw = {k: sample_kwargs.get(k) for k in ("sampler", "num_inference_steps", "variance_type")}
    sched = pipe.sampling_scheduler(**kw, schedule=sample_kwargs.get("schedule", "strided"))
    default = "flow" if isinstance(pipe.scheduler, E3FlowMatchScheduler) else "ddpm"
    report = {"output": out, "seconds": seconds, "sampler": sample_kwargs.get("sampler") or default,
              "variance_type": getattr(sched.config, "variance_type", None),
              "schedule": sample_kwargs.get("schedule", "strided"), "steps": steps, "min_over": min_over,
              "errors": None, "constant_velocity": None, "npz": None, "png": None,
              "source": source, "processes": shard.world_size}  # fmt: skip
    truth = b.x[:, c.num_cond : c.num_cond + c.num_target]
    if pipe.model.conditional and truth.shape[1] == c.num_target:
        report["errors"] = displacement_errors(out.trajectories, truth, b.batch, min_over)
        baseline = constant_velocity(b.x[:, : c.num_cond], c.num_target)
        report["constant_velocity"] = displacement_errors(baseline, truth)
        if pipe.data_info.get("windows") == "eqmotion":  # the protocol scores the focal agents
            from geodiff.metrics.trajectories import focal_nodes

            f = focal_nodes(b.batch)
            report["errors_focal"] = displacement_errors(
                out.trajectories[:, f], truth[f], b.batch[f], min_over
            )
    name = pipe.data_info.get("name", "")
    if output is not None:
        report["npz"] = out.save(output, dataset=name)
        title = f"{name}: observed (thick), ground truth (dashed), {num_samples} generated (thin)"
        report["png"] = out.plot(png, title=title)
    return report


def format_forecast_report(report: dict) -> list[str]:
    """The lines ``geodiff sample`` prints for a :func:`forecast_and_score` report."""
    out = report["output"]
    k, n = out.trajectories.shape[0], out.systems.num_graphs
    what = "forecast" if out.num_cond else "generated"
    procs = f", {report['processes']} processes" if report.get("processes", 1) > 1 else ""
    how = report["sampler"] + (f" {report['variance_type']}" if report.get("variance_type") else "")
    how += ", rescaled schedule" if report.get("schedule") == "rescaled" else ""
    lines = [f"{what} {n} systems x {k} samples in {report['seconds']:.1f} s ({how}, "
             f"{report['steps']} steps{procs}) from {report['source'] or 'the given systems'}"]  # fmt: skip
    e, cv = report["errors"], report["constant_velocity"]
    if e is not None:
        lines.append(f"ADE/FDE avg of {k}: {e['ade_avg']:.4f}/{e['fde_avg']:.4f}   "
                     f"min of {k} per {report.get('min_over', 'node')}: "
                     f"{e['ade_min']:.4f}/{e['fde_min']:.4f}   "
                     f"(constant velocity {cv['ade']:.4f}/{cv['fde']:.4f})")  # fmt: skip
    if report.get("errors_focal"):
        ef = report["errors_focal"]
        lines.append(f"focal agents (EqMotion windows): ADE/FDE avg of {k} "
                     f"{ef['ade_avg']:.4f}/{ef['fde_avg']:.4f}   min of {k}: "
                     f"{ef['ade_min']:.4f}/{ef['fde_min']:.4f}")  # fmt: skip
    if report["npz"]:
        lines += [f"NPZ  {report['npz']}", f"PNG  {report['png']}"]
    return lines
