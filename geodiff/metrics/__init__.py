"""Metrics (they measure; running methods belongs to pipelines and ``eval/``).

* ``chemistry``: stability (named valence tables), validity, uniqueness, novelty, distributions;
  ``evaluate``: the report of ``geodiff evaluate task=molecules``; ``docking``: AutoDock Vina (the
  ``docking`` extra) and PoseBusters checks; ``novelty``: hashed training SMILES (``SmilesSet``) that exports
  carry, for novelty against the training molecules.
* ``trajectories``: ADE/FDE (avg and min of K), constant-velocity and linear baselines, marginal score.
* ``pose``: rotation / translation errors, ADD, ADD-S, recalls, Chamfer distance.
"""

from geodiff.metrics.chemistry import molecule_metrics
from geodiff.metrics.evaluate import evaluate_molecule_file
from geodiff.metrics.novelty import SmilesSet
from geodiff.metrics.pose import chamfer_distance, pose_metrics, rotation_error_deg
from geodiff.metrics.trajectories import displacement_errors, evaluate_trajectory_file

__all__ = ["SmilesSet", "chamfer_distance", "displacement_errors", "evaluate_molecule_file",
           "evaluate_trajectory_file", "molecule_metrics", "pose_metrics", "rotation_error_deg"]  # fmt: skip
