"""Data: formats, the molecule and trajectory containers, simulators, point-cloud pairs, and the Lightning
data modules (``geodiff.data.datamodules``, imported on first use: they pull in Lightning).

* ``structures``: :class:`Molecule3D`, the one molecule type (atomic numbers, positions, charges, bonds;
  ``from_rdkit`` / ``to_rdkit``), and the molecule readers (SDF, XYZ, QM9 npz).
* ``molecules``: a model's view of molecules: :class:`MoleculeVocabulary`, :class:`MoleculeRecord`
  (``encode`` / ``decode``), :class:`MoleculeDataset`, QM9 and SDF training sets, batching.
* ``trajectories``: :class:`TrajectorySample`, N-body / MD17 / ETH-UCY loaders, :func:`make_system`.
* ``nbody``: the N-body simulators. ``pointclouds``: PLY/OFF/XYZ/NPY, surface sampling, registration pairs.
"""

from geodiff.data.molecules import MoleculeBatch, MoleculeDataset, MoleculeRecord, MoleculeVocabulary
from geodiff.data.structures import Molecule3D, read_molecules
from geodiff.data.trajectories import TrajectoryBatch, TrajectoryDataset, TrajectorySample, make_system

__all__ = ["Molecule3D", "MoleculeBatch", "MoleculeDataModule", "MoleculeDataset", "MoleculeRecord",
           "MoleculeVocabulary", "RegistrationDataModule", "TrajectoryBatch", "TrajectoryDataModule",
           "TrajectoryDataset", "TrajectorySample", "make_system", "read_molecules"]  # fmt: skip

_LAZY = ("MoleculeDataModule", "RegistrationDataModule", "TrajectoryDataModule")


def __getattr__(name: str):
    if name in _LAZY:
        from geodiff.data import datamodules

        return getattr(datamodules, name)
    raise AttributeError(f"module 'geodiff.data' has no attribute {name!r}")
