"""GeoTDM (Han et al., NeurIPS 2024): the trajectory diffusion objective and its Lightning module.

Training objective (GeoTDM): with prior mean ``x_r`` (zero-CoM Gaussian for unconditional models),
``x_tau = x_r + sqrt(abar)(x_0 - x_r) + sqrt(1 - abar) eps`` and the loss is ``|eps_theta - eps|^2`` (or the
x0 error for ``prediction="sample"`` models); the learnable prior is trained through the same loss. The
scheduler comes from ``configs/scheduler/geotdm_ddpm.yaml``; what it predicts and whether its noise is
zero-CoM follow the model (:func:`for_model`). The export carries ``trajectories.json``: what the data
were, so sampling can rebuild systems.
"""

from __future__ import annotations

import torch

from geodiff.config import build
from geodiff.data.trajectories import TrajectoryBatch
from geodiff.errors import GeodiffError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.schedulers import E3DDPMScheduler, E3FlowMatchScheduler
from geodiff.training.base import DiffusionModule
from geodiff.training.symmetry import SoftEquivariance, augment_trajectories, check_types

__all__ = ["TrajectoryDiffusionModule", "for_model", "trajectory_loss"]


def for_model(scheduler: E3DDPMScheduler, model: GeoTDMDenoiser) -> E3DDPMScheduler:
    """``scheduler`` with the prediction type of ``model`` and zero-CoM noise only when it is
    unconditional (a forecast is noised around its prior mean, which carries the centre of mass)."""
    want = {"prediction_type": model.config.prediction, "center_of_mass": not model.conditional}
    if all(scheduler.config[k] == v for k, v in want.items()):
        return scheduler
    return type(scheduler).from_config(scheduler.config, **want)


def trajectory_loss(model: GeoTDMDenoiser, batch: TrajectoryBatch, scheduler: E3DDPMScheduler,
                    generator: torch.Generator | None = None, details: bool = False):  # fmt: skip
    """GeoTDM's denoising loss on one batch: mean squared error of the predicted noise, or of the predicted
    clean targets for ``prediction="sample"`` models. ``details``: also the denoiser call it made, as
    ``(loss, probe)`` with ``probe = (func, inputs, input_kinds, output_kinds)`` (for soft equivariance)."""
    c = model.config
    x = batch.x
    x_cond, x0 = x[:, : c.num_cond], x[:, c.num_cond :]
    B, dev = batch.num_graphs, x.device
    t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), device=dev, generator=generator)
    noise = torch.randn(x0.shape, device=dev, dtype=x0.dtype, generator=generator)
    key = model.output_key
    ea, out_kind = batch.edge_attr, ("node_vector" if key == "eps" else "node_position")
    if model.conditional:
        x_r = model.prior(x_cond, batch.h, batch.edge_index, ea, batch.batch, B)
        x_t = x_r + scheduler.add_noise(x0 - x_r, noise, t, batch=batch.batch)
        target = noise if key == "eps" else x0
        pred = model(x_t, t, batch.h, batch.edge_index, ea, batch.batch, x_cond=x_cond)[key]

        def func(x_cond, x_t, h, nodes, edge_index):
            return (model(x_t, t, h, edge_index, ea, nodes, x_cond=x_cond)[key],
                    model.prior(x_cond, h, edge_index, ea, nodes, B))  # fmt: skip

        probe = (func, [x_cond, x_t, batch.h, batch.batch, batch.edge_index],
                 ["node_position", "node_position", "node_scalar", "node_index", "edge_index"],
                 [out_kind, "node_position"])  # fmt: skip
    else:
        x_t = scheduler.add_noise(x0, noise, t, batch=batch.batch)
        target = scheduler.project(noise if key == "eps" else x0, batch.batch)
        pred = scheduler.project(model(x_t, t, batch.h, batch.edge_index, ea, batch.batch)[key], batch.batch)

        def func(x_t, h, nodes, edge_index):
            return scheduler.project(model(x_t, t, h, edge_index, ea, nodes)[key], nodes)

        probe = (func, [x_t, batch.h, batch.batch, batch.edge_index],
                 ["node_position", "node_scalar", "node_index", "edge_index"], [out_kind])  # fmt: skip
    loss = ((pred - target) ** 2).mean()
    return (loss, probe) if details else loss


class TrajectoryDiffusionModule(DiffusionModule):
    """GeoTDM training: eps-MSE (or x0-MSE) under the configured DDPM, with forecasts scored by ADE/FDE on
    the first validation batch. ``scheduler`` default: ``configs/scheduler/geotdm_ddpm.yaml``. Other
    keyword arguments (optimiser, EMA, lr schedule, validation cadence, ``init_from``) go to
    :class:`DiffusionModule`."""

    FAMILY = "trajectories"
    PROGRESS = ("ade",)

    def __init__(self, model: GeoTDMDenoiser, scheduler: E3DDPMScheduler | None = None,
                 val_num_systems: int = 64, val_sampling_steps: int = 100,
                 augment: list[str] | None = None, augment_translation_std: float = 1.0,
                 soft_equivariance: dict[str, float] | None = None,
                 soft_equivariance_adjust_at: int | None = None,
                 soft_equivariance_warmup: int = 0, soft_equivariance_power: float = 1.0,
                 soft_equivariance_smoothing: float = 0.98, **kwargs):  # fmt: skip
        super().__init__(model, **kwargs)
        self.augment = check_types("augment", list(augment or ()), ("rotation", "reflection", "translation"))
        self.soft = None
        if soft_equivariance:
            self.soft = SoftEquivariance(dict(soft_equivariance), soft_equivariance_adjust_at,
                                         soft_equivariance_warmup, soft_equivariance_power,
                                         augment_translation_std, soft_equivariance_smoothing)  # fmt: skip
        scheduler = scheduler or build("scheduler", "geotdm_ddpm")
        if not isinstance(scheduler, (E3DDPMScheduler, E3FlowMatchScheduler)):
            raise GeodiffError(f"module.scheduler: a trajectory model trains with an E(3) DDPM or flow "
                               f"scheduler, not {type(scheduler).__name__} (scheduler=geotdm_ddpm or "
                               "geotdm_flow)")  # fmt: skip
        self.scheduler_ = for_model(scheduler, model)
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

    def loss(self, model, batch, generator=None):
        training = model is self.model and self.training
        if training and self.augment:
            batch = augment_trajectories(
                batch, self.augment, translation_std=self.hparams.augment_translation_std
            )
        if not (training and self.soft is not None):
            return {"loss": trajectory_loss(model, batch, self.scheduler_, generator=generator)}
        loss, (func, inputs, kinds, out_kinds) = trajectory_loss(
            model, batch, self.scheduler_, generator, True
        )
        r = self.soft.penalties(func, inputs, kinds, out_kinds, model.config.dim, batch.x.shape[0])
        self.soft.update(int(self.global_step), r)
        out = {"loss": loss + self.soft.loss(r), "denoising": loss.detach()}
        for k, name in enumerate(self.soft.types):
            out[f"equiv_{name}"] = r[k].detach()
            out[f"strength_{name}"] = self.soft.strengths[k]
        return out

    def run_notes(self) -> dict:
        notes = {"augment": self.augment} if self.augment else {}
        if self.soft is not None:
            notes["soft_equivariance"] = self.soft.record()
        return notes

    def batch_device(self, batch):
        return batch.x.device

    def sample_metrics(self, batch, batch_idx):
        """ADE/FDE of one forecast of the first ``val_num_systems`` systems of the first batch."""
        if not self.model.conditional or not self.should_sample(batch_idx):
            return None
        from geodiff.metrics.trajectories import displacement_errors
        from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

        sub = batch.systems(0, self.hparams.val_num_systems)
        pipe = TrajectoryDiffusionPipeline(self.ema.module, self.scheduler_, self.data_info)
        pred = pipe(sub, num_samples=1, num_inference_steps=self.hparams.val_sampling_steps,
                    seed=self.global_rank, progress=False).trajectories  # fmt: skip
        err = displacement_errors(pred, sub.x[:, self.model.config.num_cond :])
        return {"ade": err["ade"], "fde": err["fde"]}
