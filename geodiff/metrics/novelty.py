"""Novelty against a model's training molecules, from a hashed set of their canonical SMILES.

An export carries ``training_smiles.npz``: the sorted, distinct 64-bit prefixes of the SHA-256 of every
training molecule's canonical SMILES (RDKit, largest fragment, computed exactly as generated molecules'
SMILES are: :func:`geodiff.metrics.chemistry.rdkit_validity`), compressed, no pickle, no SMILES text. A
generated SMILES is novel when its hash is absent. The set is the training split of the run that wrote the
export (after a warm start, the earlier runs' data only if it was the same). Two different SMILES share a
64-bit hash with probability about n / 2^64 per lookup (5e-14 for a million training molecules), so novelty
is exact for practical sizes.

    train = SmilesSet.from_molecules(training_molecules)      # Molecule3D with their training bonds
    train.save("export/training_smiles.npz")
    SmilesSet.load("export/training_smiles.npz").novelty(generated_smiles)
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from geodiff.errors import GeodiffError
from geodiff.io import atomic_path
from geodiff.metrics.chemistry import rdkit_validity

__all__ = ["SmilesSet", "TRAINING_SMILES", "smiles_hash"]

TRAINING_SMILES = "training_smiles.npz"  # the file name inside an export


def smiles_hash(smiles: Iterable[str]) -> np.ndarray:
    """The first 8 bytes of SHA-256 of each SMILES (UTF-8), as ``uint64`` (big-endian order of the digest)."""
    out = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big") for s in smiles]
    return np.asarray(out, dtype=np.uint64)


class SmilesSet:
    """A set of canonical SMILES held as sorted 64-bit hashes (see the module docstring)."""

    def __init__(self, hashes: np.ndarray, source: str = ""):
        self.hashes = np.unique(np.asarray(hashes, dtype=np.uint64))
        self.source = source

    @classmethod
    def from_smiles(cls, smiles: Iterable[str], source: str = "") -> SmilesSet:
        return cls(smiles_hash(smiles), source)

    @classmethod
    def from_molecules(cls, molecules: Iterable, source: str = "", chunk: int = 10_000) -> SmilesSet:
        """The canonical SMILES of the molecules that sanitise (:class:`~geodiff.data.structures.Molecule3D`
        with bonds: the bonds the model was trained on), read ``chunk`` at a time from any iterable (a
        GEOM-size training split is never held whole; conformers of one molecule hash to one entry)."""
        hashes, it = [], iter(molecules)
        while part := list(itertools.islice(it, chunk)):
            hashes.append(np.unique(smiles_hash(rdkit_validity(part)["smiles"])))
        return cls(np.concatenate(hashes) if hashes else np.zeros(0, np.uint64), source)

    def __len__(self) -> int:
        return len(self.hashes)

    def __contains__(self, smiles: str) -> bool:
        h = smiles_hash([smiles])[0]
        i = int(np.searchsorted(self.hashes, h))
        return i < len(self.hashes) and self.hashes[i] == h

    def novel(self, smiles: Iterable[str]) -> np.ndarray:
        """Per SMILES: True when it is not in the set (vectorised)."""
        h = smiles_hash(smiles)
        if not len(self.hashes):
            return np.ones(len(h), bool)
        i = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        return self.hashes[i] != h

    def novelty(self, smiles: Iterable[str]) -> float:
        """Distinct SMILES not in the set / distinct SMILES (0 when there are none)."""
        distinct = sorted(set(smiles))
        return float(self.novel(distinct).mean()) if distinct else 0.0

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set (compressed npz: ``sha256_64`` and ``source``), atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, sha256_64=self.hashes, source=np.asarray(self.source))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SmilesSet:
        """Read a set written by :meth:`save`; a damaged file is one clear error."""
        from geodiff.io import check_npz_size

        path = Path(path)
        try:
            check_npz_size(path)
            with np.load(path, allow_pickle=False) as z:
                hashes, source = z["sha256_64"], str(z["source"]) if "source" in z else ""
        except GeodiffError:
            raise
        except Exception as e:  # a truncated or foreign file
            raise GeodiffError(f"{path}: not a training SMILES set ({type(e).__name__}: {e})") from None
        if hashes.dtype != np.uint64 or hashes.ndim != 1:
            raise GeodiffError(
                f"{path}: sha256_64 must be a 1-D uint64 array, got {hashes.dtype} {hashes.shape}"
            )
        return cls(hashes, source)
