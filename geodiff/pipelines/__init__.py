"""Pipelines: a trained denoiser with its schedulers, from an export to samples. One shape for every family:
``from_pretrained(name_or_path)``, ``.to(device)``, a replaceable ``scheduler``, ``__call__`` -> typed output.

* :class:`MoleculeDiffusionPipeline`: ``pipe(num_samples, num_inference_steps=..., generator=...)`` ->
  :class:`MoleculePipelineOutput` (``to_rdkit()``, ``write_sdf()``);
* :class:`TrajectoryDiffusionPipeline`: ``pipe(observed, num_samples=5, **features)`` ->
  :class:`TrajectoryPipelineOutput` (``trajectories`` ``[K, nodes, frames, dim]``, ``save()``, ``plot()``);
* :class:`RegistrationPipeline`: ``pipe(source, target, num_inference_steps=5)`` ->
  :class:`RegistrationPipelineOutput` (``poses`` ``[B, 4, 4]``).
"""

from geodiff.pipelines.base import GeodiffPipeline
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline, MoleculePipelineOutput
from geodiff.pipelines.registration import RegistrationPipeline, RegistrationPipelineOutput
from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline, TrajectoryPipelineOutput

__all__ = [
    "GeodiffPipeline",
    "MoleculeDiffusionPipeline",
    "MoleculePipelineOutput",
    "RegistrationPipeline",
    "RegistrationPipelineOutput",
    "TrajectoryDiffusionPipeline",
    "TrajectoryPipelineOutput",
]
