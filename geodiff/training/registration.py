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

import torch

from geodiff.config import build
from geodiff.errors import GeodiffError
from geodiff.manifolds import se3
from geodiff.models.registration import RegistrationNet, normalize_pair, normalized_pose
from geodiff.nn.pointcloud import pairwise_distances
from geodiff.schedulers import SE3DiffusionScheduler, SE3FlowMatchScheduler
from geodiff.training.base import DiffusionModule

__all__ = ["RegistrationDiffusionModule", "registration_loss"]


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
    if isinstance(scheduler, SE3FlowMatchScheduler):  # flow matching: a pose drawn from its prior
        noise = scheduler.sample_prior((b,), generator, torch.float64).to(s)
    else:  # diffusion: a twist N(0, I_6), scaled by the scheduler
        noise = torch.randn((b, 6), generator=generator, device="cpu").to(s)
    h_t = scheduler.add_noise(h_true, noise, steps)
    out = model(s, t, h_t, steps)
    moved = se3.apply(h_true, s)
    loss = (se3.apply(out["pose"], s) - moved).abs().mean()
    if corr_weight > 0:
        dist, j = pairwise_distances(moved, t).min(dim=-1)
        valid = dist < corr_radius
        p = out["matching"].gather(2, j.unsqueeze(-1)).squeeze(-1)
        nll = -(p.clamp_min(1e-9).log() * valid).sum() / valid.sum().clamp_min(1)
        loss = loss + corr_weight * nll
    return loss


class RegistrationDiffusionModule(DiffusionModule):
    """SE(3) diffusion registration training: the L1 point loss (+ correspondence term) under the configured
    SE(3) scheduler; validation registers the fixed validation pairs with ``val_steps`` reverse steps and
    logs rotation error and recall. ``scheduler`` default: ``configs/scheduler/se3_registration.yaml``. Other
    keyword arguments (optimiser, EMA, lr schedule, ``init_from``) go to :class:`DiffusionModule`."""

    FAMILY = "registration"
    PROGRESS = ("rot_err_deg", "recall_5deg")

    def __init__(self, model: RegistrationNet, scheduler: SE3DiffusionScheduler | None = None,
                 val_steps: int = 5, corr_weight: float = 0.0, corr_radius: float = 0.15,
                 **kwargs):  # fmt: skip
        super().__init__(model, **{"lr": 1e-3, **kwargs})
        scheduler = scheduler or build("scheduler", "se3_registration")
        if not isinstance(scheduler, (SE3DiffusionScheduler, SE3FlowMatchScheduler)):
            raise GeodiffError(f"module.scheduler: a registration model trains with an SE(3) diffusion or "
                               f"flow scheduler, not {type(scheduler).__name__} (scheduler=se3_registration "
                               "or se3_flow)")  # fmt: skip
        if scheduler.config.prediction_type != "sample":
            raise GeodiffError("scheduler.prediction_type: the registration network predicts the clean pose; "
                               "set it to sample")  # fmt: skip
        self.scheduler_ = scheduler
        self.data_info: dict = {}

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "describe"):
            self.data_info = dm.describe()

    def loss(self, model, batch, generator=None):
        h = self.hparams
        loss = registration_loss(model, self.scheduler_, batch, generator, h.corr_weight, h.corr_radius)
        if model is self.model and not torch.isfinite(loss):
            raise GeodiffError(f"registration training: non-finite loss at step {self.global_step}")
        return {"loss": loss}

    def batch_size(self, batch):
        return int(batch["source"].shape[0])

    def batch_device(self, batch):
        return torch.device("cpu")  # registration_loss draws its timesteps and noise on the CPU

    def sample_metrics(self, batch, batch_idx):
        """Rotation error, recall at 5 degrees and translation error / diameter of every validation pair."""
        from geodiff.metrics.pose import rotation_error_deg
        from geodiff.pipelines.registration import RegistrationPipeline

        pipe = RegistrationPipeline(self.ema.module, copy.deepcopy(self.scheduler_), self.data_info)
        pred = pipe.register_batch(batch["source"], batch["target"], self.hparams.val_steps, False, None)
        rot = torch.as_tensor(rotation_error_deg(pred.detach().double().cpu(), batch["pose"].double().cpu()))
        terr = (pred[:, :3, 3] - batch["pose"][:, :3, 3]).norm(dim=-1) / batch["diameter"]
        return {"rot_err_deg": rot.mean(), "recall_5deg": 100 * (rot < 5).double().mean(),
                "trans_err_over_d": terr.mean()}  # fmt: skip
