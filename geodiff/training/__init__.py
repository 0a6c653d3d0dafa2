"""Training: one Lightning base (:class:`DiffusionModule`: optimiser, lr schedule, EMA, seeded validation,
export) and a subclass per family that supplies its loss, schedulers and validation samples; ``train(cfg)``
builds data, model, module, callbacks and logger from a composed Hydra config.
"""

from geodiff.training.base import DiffusionModule
from geodiff.training.callbacks import ExportCallback, RankSeed
from geodiff.training.molecules import MoleculeDiffusionModule, eqgat_diff_loss
from geodiff.training.registration import RegistrationDiffusionModule, registration_loss
from geodiff.training.train import train
from geodiff.training.trajectories import TrajectoryDiffusionModule, trajectory_loss

__all__ = ["DiffusionModule", "ExportCallback", "MoleculeDiffusionModule", "RankSeed",
           "RegistrationDiffusionModule", "TrajectoryDiffusionModule", "eqgat_diff_loss", "registration_loss",
           "train", "trajectory_loss"]  # fmt: skip
