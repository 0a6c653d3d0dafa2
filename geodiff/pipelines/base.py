"""The shape every geodiff pipeline shares (after diffusers' ``DiffusionPipeline``).

A pipeline holds a denoiser (``model``), its scheduler(s) and what the export says about the data (``info``):

* ``Pipeline.from_pretrained(name_or_path)``: a shipped model by name (``qm9_eqgat_small``) or an export
  folder written by ``geodiff train``; a checkpoint of another family is a one-line error;
* ``pipe.to(device)`` moves the denoiser (and returns the pipeline);
* ``pipe.set_progress_bar_config(disable=True)`` or ``pipe(..., progress=False)`` silences progress bars;
* ``pipe.scheduler`` may be replaced by any scheduler of the same kind (e.g. DDIM for DDPM, another number of
  steps); :func:`geodiff.schedulers.convert` builds one from another's config;
* ``pipe(...)`` returns a typed output (``MoleculePipelineOutput``, ``TrajectoryPipelineOutput``,
  ``RegistrationPipelineOutput``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

import torch
from tqdm import tqdm

from geodiff.config import resolve_checkpoint
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.io import checkpoint_meta
from geodiff.schedulers import E3DDIMScheduler, E3DDPMScheduler, E3FlowMatchScheduler, convert

__all__ = ["GeodiffPipeline", "SAMPLERS"]

SAMPLERS = {"ddpm": E3DDPMScheduler, "ddim": E3DDIMScheduler}  # ``sampler=`` of the E(3) pipelines


class GeodiffPipeline:
    """Base of the three family pipelines. A subclass names its ``FAMILY`` and ``MODEL`` class and reads
    its schedulers and export metadata in :meth:`_from_export`."""

    FAMILY: ClassVar[str] = ""
    MODEL: ClassVar[type] = torch.nn.Module
    OTHER_MODELS: ClassVar[tuple[type, ...]] = ()  # further denoiser classes an export of the family may hold

    model: torch.nn.Module
    progress: bool = True

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike):
        """Load an exported model: a shipped name (``geodiff info`` lists them) or an export folder."""
        d = resolve_checkpoint(name_or_path)
        meta = checkpoint_meta(d, cls.FAMILY)
        try:
            model = cls.model_class(d / "model").from_pretrained(d / "model")
            return cls._from_export(model, d, meta)
        except GeodiffError as exc:
            if str(d) in str(exc):
                raise
            raise GeodiffError(f"{d}: {exc}") from None
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
            raise GeodiffError(f"{d}: unreadable {cls.FAMILY} checkpoint ({what})") from None

    @classmethod
    def model_class(cls, folder: Path) -> type:
        """The denoiser class an exported ``model/`` folder names (``_class_name`` in its ``config.json``),
        among ``MODEL`` and ``OTHER_MODELS``; ``MODEL`` when it names none of them (its loader then says
        what is wrong)."""
        try:
            name = json.loads((folder / "config.json").read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError):
            return cls.MODEL
        return next((k for k in (cls.MODEL, *cls.OTHER_MODELS) if k.__name__ == name), cls.MODEL)

    @classmethod
    def _from_export(cls, model: torch.nn.Module, directory: Path, meta: dict):
        raise NotImplementedError

    def to(self, device: str | torch.device):
        """Move the denoiser to ``device``; returns the pipeline."""
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def set_progress_bar_config(self, disable: bool = False) -> None:
        """``disable=True``: no progress bars from this pipeline (as diffusers' pipelines)."""
        self.progress = not disable

    def progress_bar(self, progress: bool | None = None, **kwargs) -> tqdm:
        """A tqdm bar, shown unless ``progress`` (or, when it is None, the pipeline's setting) is False."""
        show = self.progress if progress is None else progress
        return tqdm(disable=not show, **kwargs)

    @staticmethod
    def generator(generator: torch.Generator | None, seed: int | None, device="cpu"):
        """The random source of a call: ``generator`` when given, else one seeded with ``seed`` (None: torch's
        global generator)."""
        if generator is not None:
            return generator
        return torch.Generator(device=device).manual_seed(int(seed)) if seed is not None else None

    @staticmethod
    def check_call(num_inference_steps=None, sampler: str | None = None, **counts) -> None:
        """One-line errors for a call's arguments: positive integer ``counts`` (``num_samples=...``), a
        positive or None ``num_inference_steps``, a known ``sampler`` or None."""
        for name, v in {**counts, "num_inference_steps": num_inference_steps}.items():
            if v is None and name == "num_inference_steps":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                tail = " or None" if name == "num_inference_steps" else ""
                raise GeodiffValueError(f"{name}: must be a positive integer{tail}, got {v!r}")
        if sampler is not None and sampler not in SAMPLERS:
            raise GeodiffValueError(f"sampler: expected {' or '.join(SAMPLERS)}, got {sampler!r}")

    @staticmethod
    def with_sampler(scheduler, sampler: str | None):
        """``scheduler`` as the ``sampler`` of one call: itself for None or its own kind, else the same
        schedule with ``ddpm`` (ancestral) or deterministic ``ddim`` steps."""
        if sampler is None or type(scheduler) is SAMPLERS[sampler]:
            return scheduler
        if isinstance(scheduler, E3FlowMatchScheduler):
            raise GeodiffValueError(
                f"sampler: {sampler} is a diffusion sampler; this is a flow-matching export, which samples "
                f"with its own {scheduler.config.solver} solver (leave sampler unset)"
            )
        return convert(scheduler, SAMPLERS[sampler], **({"eta": 0.0} if sampler == "ddim" else {}))
