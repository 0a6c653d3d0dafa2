"""Schedulers that travel together: the four of a molecule diffusion model (positions, atom types, charges,
bonds), which share one time axis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from geodiff.schedulers.scheduling_d3pm import CategoricalD3PMScheduler
from geodiff.schedulers.scheduling_e3_ddpm import E3DDPMScheduler

__all__ = ["MoleculeSchedulers"]


@dataclass
class MoleculeSchedulers:
    """The four schedulers of a molecule diffusion model (they share T, and one time grid)."""

    PARTS: ClassVar[tuple[str, ...]] = ("pos", "atoms", "charges", "bonds")

    pos: E3DDPMScheduler
    atoms: CategoricalD3PMScheduler
    charges: CategoricalD3PMScheduler
    bonds: CategoricalD3PMScheduler

    def from_configs(self, **changes) -> MoleculeSchedulers:
        """The four schedulers rebuilt from their configs with ``changes`` applied to each."""
        return MoleculeSchedulers(**{n: type(getattr(self, n)).from_config(getattr(self, n).config, **changes)
                                     for n in self.PARTS})  # fmt: skip

    @property
    def num_train_timesteps(self) -> int:
        return self.pos.config.num_train_timesteps
