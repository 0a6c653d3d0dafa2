"""Training SE(3) diffusion registration: pairs generated on the fly from object meshes, the forward
process of :class:`~geodiff.schedulers.SE3DiffusionScheduler`, and the paper's point-distance loss.

Training pairs come from the TUD-L meshes (a BOP ``models`` folder) and/or procedural compounds of boxes,
ellipsoids and cylinders (``procedural_fraction``), with full rotations by default, jitter on a share of
pairs (``noisy_fraction``) and half-space crops on another (``partial_fraction``), so one model serves the
clean / noisy / partial and 45 / 180 degree settings. Every pair has exactly ``num_points`` points per
cloud (partial views are cropped from a larger sample) so pairs batch densely.

Loss (Jiang et al.): with ``H'`` the true pose between the normalised clouds and ``H_t`` its noised
version at a uniform step ``t``, ``L = mean |H0_hat x - H' x|`` over the source points (L1).
"""

from __future__ import annotations

import copy

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geodiff.data.pointclouds import PairConfig, load_tudl_models, make_pair, procedural_mesh
from geodiff.errors import GeodiffError
from geodiff.manifolds import se3
from geodiff.models.registration import RegistrationNet, normalize_pair, normalized_pose
from geodiff.schedulers import SE3DiffusionScheduler
from geodiff.training.export import ExportMixin
from geodiff.training.optim import check_lr_schedule, optimizer_config

__all__ = ["PairDataset", "RegistrationDataModule", "RegistrationDiffusionModule", "registration_loss"]


class PairDataset(Dataset):
    """``length`` pairs drawn from ``objects`` (dicts with ``mesh``, ``diameter``, ``unit``) and procedural
    shapes. ``seed=None`` draws fresh pairs every time (training; seeded through torch's RNG, which
    Lightning seeds per worker); an integer seed fixes pair ``i`` (validation)."""

    def __init__(self, objects: list[dict], length: int, num_points: int = 512, max_angle: float = 180.0,
                 max_translation: float = 0.5, noise: float = 0.01, keep: float = 0.7,
                 noisy_fraction: float = 0.5, partial_fraction: float = 0.5, procedural_fraction: float = 0.5,
                 seed: int | None = None):  # fmt: skip
        if not objects and procedural_fraction < 1:
            raise GeodiffError("registration data: no object meshes and procedural_fraction < 1")
        self.objects, self.length, self.seed = objects, int(length), seed
        self.num_points, self.max_angle, self.max_translation = num_points, max_angle, max_translation
        self.noise, self.keep = noise, keep
        self.noisy, self.partial, self.procedural = noisy_fraction, partial_fraction, procedural_fraction

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        else:
            rng = np.random.default_rng([self.seed, i])
        if not self.objects or rng.random() < self.procedural:
            obj, diameter, unit = procedural_mesh(rng), 2.0, "unitless"
        else:
            o = self.objects[int(rng.integers(len(self.objects)))]
            obj, diameter, unit = o["mesh"], o["diameter"], o.get("unit", "mm")
        partial = rng.random() < self.partial
        keep = self.keep if partial else 1.0
        cfg = PairConfig(num_points=int(np.ceil(self.num_points / keep)), max_angle=self.max_angle,
                         max_translation=self.max_translation,
                         noise=self.noise if rng.random() < self.noisy else 0.0, keep=keep,
                         num_model_points=256)  # fmt: skip
        p = make_pair(obj, cfg, rng, diameter, unit)
        n = self.num_points
        return {
            "source": torch.as_tensor(p.source[:n], dtype=torch.float32),
            "target": torch.as_tensor(p.target[:n], dtype=torch.float32),
            "pose": torch.as_tensor(p.pose, dtype=torch.float32),
            "model": torch.as_tensor(p.model, dtype=torch.float32),
            "diameter": torch.tensor(p.diameter, dtype=torch.float32),
        }


class RegistrationDataModule(L.LightningDataModule):
    """Registration pairs from a TUD-L (BOP) models folder and/or procedural shapes, generated on the fly.

    Args:
        models_dir: BOP ``models`` folder (``obj_*.ply`` + ``models_info.json``); ``null`` = procedural only.
        train_pairs / val_pairs: pairs per training epoch / in the fixed validation set.
        The rest: see :class:`PairDataset`.
    """

    def __init__(self, models_dir: str | None = "../shared/data/registration/tudl", num_points: int = 512,
                 max_angle: float = 180.0, max_translation: float = 0.5, noise: float = 0.01,
                 keep: float = 0.7,
                 noisy_fraction: float = 0.5, partial_fraction: float = 0.5, procedural_fraction: float = 0.5,
                 train_pairs: int = 2000, val_pairs: int = 64, batch_size: int = 8, num_workers: int = 0,
                 val_seed: int = 12345):  # fmt: skip
        super().__init__()
        self.models_dir = models_dir
        self.kw = dict(num_points=num_points, max_angle=max_angle, max_translation=max_translation,
                       noise=noise, keep=keep, noisy_fraction=noisy_fraction,
                       partial_fraction=partial_fraction,
                       procedural_fraction=procedural_fraction)  # fmt: skip
        self.train_pairs, self.val_pairs, self.val_seed = train_pairs, val_pairs, val_seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self._objects: list[dict] | None = None

    def objects(self) -> list[dict]:
        if self._objects is None:
            if self.models_dir:
                from geodiff.cli import resolve_path

                self._objects = [dict(o, unit="mm") for o in load_tudl_models(resolve_path(self.models_dir))]
            else:
                self._objects = []
        return self._objects

    def describe(self) -> dict:
        return {"models_dir": str(self.models_dir) if self.models_dir else None,
                "objects": [o["name"] for o in self.objects()], "train_pairs_per_epoch": self.train_pairs,
                "batch_size": self.batch_size, **self.kw}  # fmt: skip

    def train_dataloader(self):
        ds = PairDataset(self.objects(), self.train_pairs, **self.kw)
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def val_dataloader(self):
        ds = PairDataset(self.objects(), self.val_pairs, seed=self.val_seed, **self.kw)
        return DataLoader(ds, batch_size=max(self.batch_size, 16), num_workers=0)


def registration_loss(model: RegistrationNet, scheduler: SE3DiffusionScheduler, batch: dict,
                      generator: torch.Generator | None = None, corr_weight: float = 0.0,
                      corr_radius: float = 0.15) -> torch.Tensor:  # fmt: skip
    """L1 between the normalised source moved by ``H0_hat`` and by the true pose, at a uniform step
    (the paper's loss), plus ``corr_weight`` x a correspondence term: the negative log of the soft
    assignment of each source point to the target point nearest its true position, for source points
    that have one within ``corr_radius`` (normalised units; points without a partner in partial views are
    left out). The extra term supervises the matching directly instead of only through the SVD."""
    s, t, cs, ct, scale = normalize_pair(batch["source"], batch["target"])
    h_true = normalized_pose(batch["pose"], cs, ct, scale)
    b = s.shape[0]
    T = scheduler.config.num_train_timesteps
    steps = torch.randint(0, T, (b,), generator=generator, device="cpu").to(s.device)
    noise = torch.randn((b, 6), generator=generator, device="cpu").to(s)
    h_t = scheduler.add_noise(h_true, noise, steps)
    out = model(s, t, h_t, steps)
    moved = se3.apply(h_true, s)
    loss = (se3.apply(out["pose"], s) - moved).abs().mean()
    if corr_weight > 0:
        dist, j = torch.cdist(moved, t).min(dim=-1)
        valid = dist < corr_radius
        p = out["matching"].gather(2, j.unsqueeze(-1)).squeeze(-1)
        nll = -(p.clamp_min(1e-9).log() * valid).sum() / valid.sum().clamp_min(1)
        loss = loss + corr_weight * nll
    return loss


class RegistrationDiffusionModule(ExportMixin, L.LightningModule):
    """SE(3) diffusion registration training: L1 point loss, Adam, warm-up EMA; validation registers the
    fixed validation pairs with the reverse process and logs rotation error and recall."""

    FAMILY = "registration"

    def __init__(self, model: RegistrationNet, num_train_timesteps: int = 200, sigma_r: float = 0.05,
                 sigma_t: float = 0.03, lr: float = 1e-3, weight_decay: float = 0.0, ema_decay: float = 0.999,
                 val_steps: int = 5, corr_weight: float = 0.0, corr_radius: float = 0.15,
                 init_from: str | None = None, lr_schedule: str = "constant",
                 lr_decay_steps: int | None = None, lr_min_ratio: float = 0.05):  # fmt: skip
        super().__init__()
        check_lr_schedule(lr_schedule, lr_decay_steps, lr_min_ratio)
        self.save_hyperparameters(ignore=["model"])
        self._set_model(model, ema_decay, init_from)
        self.scheduler_ = SE3DiffusionScheduler(num_train_timesteps=num_train_timesteps, sigma_r=sigma_r,
                                                sigma_t=sigma_t, prediction_type="sample")  # fmt: skip
        self.data_info: dict = {}

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            self.data_info = dm.describe()

    def training_step(self, batch, batch_idx):
        loss = registration_loss(self.model, self.scheduler_, batch, None, self.hparams.corr_weight,
                                 self.hparams.corr_radius)  # fmt: skip
        if not torch.isfinite(loss):
            raise GeodiffError(f"registration training: non-finite loss at step {self.global_step}")
        self.log("loss", loss, prog_bar=True, batch_size=batch["source"].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(self.model)

    def validation_step(self, batch, batch_idx):
        from geodiff.metrics.pose import rotation_error_deg
        from geodiff.pipelines.registration import RegistrationPipeline

        b = batch["source"].shape[0]
        g = torch.Generator().manual_seed(1000 + batch_idx)
        val_loss = registration_loss(self.ema.module, self.scheduler_, batch, g, self.hparams.corr_weight,
                                     self.hparams.corr_radius)  # fmt: skip
        self.log("val_loss", val_loss, batch_size=b)
        pipe = RegistrationPipeline(self.ema.module, copy.deepcopy(self.scheduler_), self.data_info)
        pred = pipe.register_batch(batch["source"], batch["target"], self.hparams.val_steps, False, None)
        self.ema.module.train(self.model.training)
        rot = torch.as_tensor(rotation_error_deg(pred.detach().double().cpu(), batch["pose"].double().cpu()))
        terr = (pred[:, :3, 3] - batch["pose"][:, :3, 3]).norm(dim=-1) / batch["diameter"]
        self.log("val/rot_err_deg", rot.mean(), prog_bar=True, batch_size=b)
        self.log("val/recall_5deg", 100 * (rot < 5).double().mean(), prog_bar=True, batch_size=b)
        self.log("val/trans_err_over_d", terr.mean(), batch_size=b)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.Adam(self.model.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        return optimizer_config(opt, h.lr_schedule, self.trainer, h.lr_decay_steps, h.lr_min_ratio)
