"""3D molecules as tensors: vocabulary, RDKit conversion, QM9 (EDM npz layout), datasets, batching.

A molecule is a :class:`MoleculeRecord` (positions in Angstrom, atom-type and formal-charge class indices,
and its bonds as an ``i < j`` list with bond-type classes). Batches are node-flattened with a ``batch`` vector
and a fully connected directed edge list per molecule (EQGAT-diff's graph), whose ``edge_types`` are the
bond classes (0 = no bond). Bond types follow EQGAT-diff: none, single, double, triple, aromatic; formal
charges use six classes, -2 .. 3.

QM9 in the npz layout used by EDM (``num_atoms``, ``charges`` = atomic numbers, ``positions``) carries no
bonds: they are perceived once with RDKit's ``rdDetermineBonds`` (xyz2mol, total charge 0) and the
processed tensors are cached as safetensors. Molecules whose bonds cannot be perceived are skipped and
counted, never silently.

The dataset builders kekulize by default (``kekulize=True``): aromatic rings are written with alternating
single and double bonds, as in the QM9 SDF that MiDi and EQGAT-diff train on, so every bond order is an
integer and every training molecule passes the valence (stability) check. With aromatic bonds kept, pyrrole
N (1.5 + 1.5 + 1), furan O (1.5 + 1.5) or a carbonyl carbon in a ring (1.5 + 1.5 + 2) miss their valence:
RDKit-perceived QM9 is then only 83.6 % stable, a ceiling for any model trained on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds

from geodiff.data.structures import (
    Molecule3D,
    atomic_number,
    element_symbol,
    from_rdkit,
    iter_sdf,
    mol_name,
    read_qm9_npz,
    to_rdkit,
)
from geodiff.errors import GeodiffError, GeodiffValueError, first_line

__all__ = [
    "BOND_TYPES",
    "CHARGE_CLASSES",
    "QM9_ATOMS",
    "MoleculeVocabulary",
    "MoleculeRecord",
    "MoleculeBatch",
    "MoleculeDataset",
    "DatasetStatistics",
    "perceive_bonds",
    "mol_to_record",
    "record_to_mol",
    "encode",
    "read_qm9_npz",
    "collate_molecules",
    "fully_connected_edges",
    "iter_qm9_xyz",
    "dataset_from_qm9_xyz",
    "dataset_from_sdf",
    "mol_name",
]

BOND_TYPES = ("none", "single", "double", "triple", "aromatic")
CHARGE_CLASSES = (-2, -1, 0, 1, 2, 3)
QM9_ATOMS = ("H", "C", "N", "O", "F")
_PT = Chem.GetPeriodicTable()


@dataclass(frozen=True)
class MoleculeVocabulary:
    """Classes of atoms (element symbols), formal charges and bonds a model is trained on."""

    atoms: tuple[str, ...] = QM9_ATOMS
    charges: tuple[int, ...] = CHARGE_CLASSES
    bonds: tuple[str, ...] = BOND_TYPES

    def atom_index(self, symbol: str) -> int:
        try:
            return self.atoms.index(symbol)
        except ValueError:
            raise GeodiffValueError(
                f"unknown element {symbol!r}: the vocabulary is {', '.join(self.atoms)}"
            ) from None

    def charge_index(self, charge: int) -> int:
        try:
            return self.charges.index(int(charge))
        except ValueError:
            raise GeodiffValueError(
                f"formal charge {charge:+d} is outside the vocabulary {self.charges}"
            ) from None

    def to_dict(self) -> dict:
        return {"atoms": list(self.atoms), "charges": list(self.charges), "bonds": list(self.bonds)}

    @classmethod
    def from_dict(cls, d: dict) -> MoleculeVocabulary:
        return cls(tuple(d["atoms"]), tuple(d["charges"]), tuple(d["bonds"]))


@dataclass
class MoleculeRecord:
    """A :class:`~geodiff.data.structures.Molecule3D` as a model sees it, through a
    :class:`MoleculeVocabulary`: ``pos`` [N, 3] (Angstrom), ``atom_types``/``charges`` [N] class indices,
    ``bond_index`` [2, B] with ``i < j`` and ``bond_types`` [B] in 1..4. Made by :func:`encode`, undone by
    :meth:`decode`."""

    pos: torch.Tensor
    atom_types: torch.Tensor
    charges: torch.Tensor
    bond_index: torch.Tensor
    bond_types: torch.Tensor
    name: str = ""

    @property
    def num_atoms(self) -> int:
        return int(self.pos.shape[0])

    def decode(self, vocab: MoleculeVocabulary) -> Molecule3D:
        """The molecule these classes stand for (atomic numbers, formal charges, bonds)."""
        z_of, q_of = _class_tables(vocab)
        bonds = np.concatenate([self.bond_index.numpy().T, self.bond_types.numpy()[:, None]], axis=1)
        z, q = z_of[self.atom_types.numpy()], q_of[self.charges.numpy()]
        return Molecule3D(z, self.pos.double().numpy(), q, bonds, self.name)


@functools.lru_cache(maxsize=64)
def _class_tables(vocab: MoleculeVocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Atomic number of every atom class and formal charge of every charge class."""
    return (np.array([atomic_number(a) for a in vocab.atoms], dtype=np.int64),
            np.array(vocab.charges, dtype=np.int64))  # fmt: skip


def encode(m: Molecule3D, vocab: MoleculeVocabulary) -> MoleculeRecord:
    """The classes of ``m`` in ``vocab`` (``GeodiffValueError`` for an element or charge outside it, or a
    molecule without bonds)."""
    if m.bonds is None:
        raise GeodiffValueError(f"molecule {m.name}: has no bonds (perceive them first)")
    atoms = [vocab.atom_index(element_symbol(z)) for z in m.atomic_numbers.tolist()]
    charges = [vocab.charge_index(q) for q in m.charges.tolist()]
    return MoleculeRecord(
        torch.tensor(m.pos, dtype=torch.float32), torch.tensor(atoms, dtype=torch.long),
        torch.tensor(charges, dtype=torch.long), torch.from_numpy(m.bonds[:, :2].T.copy()).reshape(2, -1),
        torch.from_numpy(m.bonds[:, 2].copy()), m.name,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- RDKit
def perceive_bonds(atomic_numbers: Sequence[int], positions: np.ndarray, charge: int = 0) -> Chem.Mol:
    """A sanitised RDKit molecule with bonds and formal charges perceived from 3D (rdDetermineBonds).

    Raises ``GeodiffError`` when RDKit cannot assign a valid bonding pattern.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) != len(atomic_numbers):
        raise GeodiffValueError(
            f"positions: expected [{len(atomic_numbers)}, 3], got {list(positions.shape)}"
        )
    if not np.isfinite(positions).all():
        raise GeodiffValueError("positions: contain NaN/inf")
    rw = Chem.RWMol()
    for z in atomic_numbers:
        rw.AddAtom(Chem.Atom(int(z)))
    conf = Chem.Conformer(len(atomic_numbers))
    for i, p in enumerate(positions):
        conf.SetAtomPosition(i, p.tolist())
    rw.AddConformer(conf, assignId=True)
    mol = rw.GetMol()
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=charge)
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises ValueError / RuntimeError / its own sanitisation errors
        raise GeodiffError(f"bond perception failed: {first_line(exc)}") from None
    return mol


def mol_to_record(mol: Chem.Mol, vocab: MoleculeVocabulary, name: str = "",
                  kekulize: bool = False) -> MoleculeRecord:  # fmt: skip
    """The classes of an RDKit molecule with a conformer (explicit hydrogens kept as they are):
    ``encode(Molecule3D.from_rdkit(mol), vocab)``.

    ``kekulize``: write aromatic bonds as alternating single / double bonds (RDKit's Kekule form); a
    molecule that has none raises ``GeodiffValueError``.
    """
    if kekulize and any(b.GetIsAromatic() for b in mol.GetBonds()):
        mol = Chem.Mol(mol)
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)
        except Exception as exc:  # RDKit's KekulizeException
            raise GeodiffValueError(f"molecule {name}: cannot be kekulized ({first_line(exc)})") from None
    try:
        m = from_rdkit(mol, name)
    except GeodiffError as exc:  # no conformer, a dummy atom, an unsupported bond type
        raise GeodiffValueError(str(exc)) from None
    if m.bonds is None:
        m = m.with_bonds(np.zeros((0, 3), dtype=np.int64))
    return encode(m, vocab)


def record_to_mol(record: MoleculeRecord, vocab: MoleculeVocabulary, sanitize: bool = False) -> Chem.Mol:
    """An RDKit molecule with the record's atoms, charges, bonds, conformer and name (sanitised on request):
    ``record.decode(vocab).to_rdkit(sanitize)``."""
    return to_rdkit(record.decode(vocab), sanitize=sanitize)


# ------------------------------------------------------------------------------------------- QM9 npz
def _perceive_one(args):
    idx, z, pos = args
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = perceive_bonds(z, pos)
    except GeodiffError as exc:
        return idx, None, str(exc)
    return idx, Chem.MolToMolBlock(mol), None


# ------------------------------------------------------------------------------------------- dataset
@dataclass
class DatasetStatistics:
    """Marginals stored with a model: class frequencies and the histogram of atom counts."""

    atom_marginal: list[float]
    charge_marginal: list[float]
    bond_marginal: list[float]  # over all unordered atom pairs, "none" included
    num_atoms_hist: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "atom_marginal": self.atom_marginal,
            "charge_marginal": self.charge_marginal,
            "bond_marginal": self.bond_marginal,
            "num_atoms_hist": {str(k): v for k, v in sorted(self.num_atoms_hist.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetStatistics:
        """From an export's record; marginals and the histogram are checked (finite, non-negative, not all
        zero) so that a damaged record fails here in one line, not inside sampling."""
        stats = cls(d["atom_marginal"], d["charge_marginal"], d["bond_marginal"],
                    {int(k): int(v) for k, v in d["num_atoms_hist"].items()})  # fmt: skip
        for name in ("atom_marginal", "charge_marginal", "bond_marginal"):
            v = np.asarray(getattr(stats, name), dtype=float)
            if v.ndim != 1 or not np.isfinite(v).all() or (v < 0).any() or v.sum() <= 0:
                raise GeodiffValueError(f"statistics.{name}: must be non-negative, finite and not all zero")
        hist = stats.num_atoms_hist
        if not hist or min(hist) < 1 or min(hist.values()) < 0 or sum(hist.values()) <= 0:
            raise GeodiffValueError("statistics.num_atoms_hist: needs sizes >= 1 with non-negative counts")
        return stats

    def sample_num_atoms(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Atom counts drawn from the training histogram (EDM / EQGAT-diff sampling)."""
        sizes = torch.tensor(sorted(self.num_atoms_hist), dtype=torch.long)
        counts = torch.tensor([self.num_atoms_hist[int(s)] for s in sizes], dtype=torch.float64)
        idx = torch.multinomial(counts, n, replacement=True, generator=generator)
        return sizes[idx]


class MoleculeDataset(torch.utils.data.Dataset):
    """Molecules stored as flat tensors with offsets (fast to save, load and index).

    Build from records (:meth:`from_records`), from a QM9 npz (:meth:`from_qm9_npz`, cached), or load a
    saved one (:meth:`load`). ``failures`` lists ``(source index, reason)`` of molecules that were skipped.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], vocab: MoleculeVocabulary,
                 names: list[str] | None = None,
                 failures: list[tuple[int, str]] | None = None, source: str = ""):  # fmt: skip
        self.t = tensors
        self.vocab = vocab
        self.names = names or [""] * (len(tensors["atom_ptr"]) - 1)
        self.failures = failures or []
        self.source = source

    # ---------------------------------------------------------------------------------- construction
    @classmethod
    def from_records(
        cls, records: Sequence[MoleculeRecord], vocab: MoleculeVocabulary, **kw
    ) -> MoleculeDataset:
        if not records:
            raise GeodiffValueError("records: the dataset is empty (no molecule could be read)")
        n_atoms = torch.tensor([r.num_atoms for r in records])
        n_bonds = torch.tensor([r.bond_types.numel() for r in records])
        zero = torch.zeros(1, dtype=torch.long)
        tensors = {
            "pos": torch.cat([r.pos.float() for r in records]),
            "atom_types": torch.cat([r.atom_types for r in records]),
            "charges": torch.cat([r.charges for r in records]),
            "bond_index": torch.cat([r.bond_index for r in records], dim=1),
            "bond_types": torch.cat([r.bond_types for r in records]),
            "atom_ptr": torch.cat([zero, n_atoms.cumsum(0)]),
            "bond_ptr": torch.cat([zero, n_bonds.cumsum(0)]),
        }
        return cls(tensors, vocab, names=[r.name for r in records], **kw)

    @classmethod
    def from_qm9_npz(
        cls,
        path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        limit: int | None = None,
        num_workers: int | None = None,
        progress: bool = True,
        kekulize: bool = True,
    ) -> MoleculeDataset:
        """QM9 from the EDM npz layout with bonds perceived by RDKit (Kekulé form unless ``kekulize`` is
        false), cached in ``cache_dir``."""
        path = Path(path)
        n, z, pos = read_qm9_npz(path)
        count = len(n) if limit is None else min(int(limit), len(n))
        cache = None
        if cache_dir is not None:
            stat = path.stat()
            key = hashlib.sha1(
                f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{count}|kekulize={kekulize}".encode()
            ).hexdigest()
            form = "kekule" if kekulize else "aromatic"
            cache = Path(cache_dir) / f"qm9_{path.stem}_{count}_{form}_{key[:10]}"
            if (cache / "molecules.safetensors").is_file():
                return cls.load(cache)
        vocab = MoleculeVocabulary(QM9_ATOMS)
        jobs = [(i, z[i, : n[i]], pos[i, : n[i]]) for i in range(count)]
        records, failures = [], []
        workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
        from tqdm import tqdm

        RDLogger.DisableLog("rdApp.*")
        if workers > 1 and count > 64:
            with ProcessPoolExecutor(workers) as pool:
                results = list(tqdm(pool.map(_perceive_one, jobs, chunksize=64), total=count,
                                    desc="perceiving QM9 bonds", disable=not progress))  # fmt: skip
        else:
            results = [
                _perceive_one(j) for j in tqdm(jobs, desc="perceiving QM9 bonds", disable=not progress)
            ]
        for idx, block, err in results:
            if block is None:
                failures.append((idx, err))
                continue
            mol = Chem.MolFromMolBlock(block, removeHs=False, sanitize=True)
            try:
                records.append(mol_to_record(mol, vocab, name=f"qm9_{idx}", kekulize=kekulize))
            except GeodiffError as exc:
                failures.append((idx, str(exc)))
        ds = cls.from_records(records, vocab, failures=failures, source=str(path))
        if cache is not None:
            ds.save(cache)
        return ds

    # ---------------------------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """``molecules.safetensors`` + ``molecules.json`` (vocabulary, names, failures, statistics)."""
        from safetensors.torch import save_file

        from geodiff.io import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "molecules.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.t.items()}, str(tmp))
        meta = {"vocab": self.vocab.to_dict(), "names": self.names, "failures": self.failures,
                "source": self.source, "statistics": self.statistics().to_dict()}  # fmt: skip
        with atomic_path(directory / "molecules.json") as tmp:
            tmp.write_text(json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> MoleculeDataset:
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            tensors = load_file(str(directory / "molecules.safetensors"))
            meta = json.loads((directory / "molecules.json").read_text())
        except FileNotFoundError as exc:
            raise GeodiffError(
                f"{directory}: not a saved molecule dataset ({exc.filename} missing)"
            ) from None
        except Exception as exc:
            raise GeodiffError(f"{directory}: unreadable molecule dataset ({type(exc).__name__})") from None
        return cls(tensors, MoleculeVocabulary.from_dict(meta["vocab"]), meta["names"],
                   [tuple(f) for f in meta["failures"]], meta.get("source", ""))  # fmt: skip

    # ---------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.t["atom_ptr"]) - 1

    def __getitem__(self, i: int) -> MoleculeRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"molecule index {i} out of range for {len(self)} molecules")
        i = i % len(self)
        a0, a1 = int(self.t["atom_ptr"][i]), int(self.t["atom_ptr"][i + 1])
        b0, b1 = int(self.t["bond_ptr"][i]), int(self.t["bond_ptr"][i + 1])
        return MoleculeRecord(
            self.t["pos"][a0:a1], self.t["atom_types"][a0:a1], self.t["charges"][a0:a1],
            self.t["bond_index"][:, b0:b1], self.t["bond_types"][b0:b1], self.names[i],
        )  # fmt: skip

    def statistics(self) -> DatasetStatistics:
        v = self.vocab
        n_atoms = torch.diff(self.t["atom_ptr"])
        atom = torch.bincount(self.t["atom_types"], minlength=len(v.atoms)).double()
        charge = torch.bincount(self.t["charges"], minlength=len(v.charges)).double()
        bonds = torch.bincount(self.t["bond_types"], minlength=len(v.bonds)).double()
        bonds[0] = float((n_atoms * (n_atoms - 1) // 2).sum()) - float(bonds[1:].sum())
        hist = torch.bincount(n_atoms)
        return DatasetStatistics(
            (atom / atom.sum()).tolist(), (charge / charge.sum()).tolist(), (bonds / bonds.sum()).tolist(),
            {int(k): int(c) for k, c in enumerate(hist.tolist()) if c > 0},
        )  # fmt: skip


# ------------------------------------------------------------------------------------------- batching
def fully_connected_edges(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges ``i != j`` within each graph (``[2, E]``, sorted by source then target) and the
    graph id of every edge. Vectorised; no Python loop over molecules."""
    num_atoms = num_atoms.long()
    ptr = torch.cat([num_atoms.new_zeros(1), num_atoms.cumsum(0)[:-1]])
    sq = num_atoms * num_atoms
    graph = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), sq)
    start = torch.cat([sq.new_zeros(1), sq.cumsum(0)[:-1]])
    k = torch.arange(int(sq.sum()), device=num_atoms.device) - start[graph]
    n = num_atoms[graph]
    a, b = k // n, k % n
    keep = a != b
    edge_index = torch.stack([a[keep] + ptr[graph[keep]], b[keep] + ptr[graph[keep]]])
    return edge_index, graph[keep]


@dataclass
class MoleculeBatch:
    """Node-flattened batch with a fully connected graph per molecule (both edge directions)."""

    pos: torch.Tensor  # [N, 3]
    atom_types: torch.Tensor  # [N]
    charges: torch.Tensor  # [N]
    batch: torch.Tensor  # [N]
    edge_index: torch.Tensor  # [2, E], i != j within a molecule
    edge_types: torch.Tensor  # [E], bond class of (i, j), symmetric
    edge_batch: torch.Tensor  # [E]
    num_atoms: torch.Tensor  # [G]

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.numel())

    def to(self, device) -> MoleculeBatch:
        return MoleculeBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def collate_molecules(records: Iterable[MoleculeRecord]) -> MoleculeBatch:
    records = list(records)
    if not records:
        raise GeodiffValueError("collate: empty batch")
    num_atoms = torch.tensor([r.num_atoms for r in records])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), num_atoms.cumsum(0)[:-1]])
    edge_index, edge_batch = fully_connected_edges(num_atoms)
    total = int(num_atoms.sum())
    # bond (i, j) -> position of the directed edge in the sorted edge list, both directions
    bonds = torch.cat([r.bond_index + p for r, p in zip(records, ptr.tolist(), strict=True)], dim=1)
    btypes = torch.cat([r.bond_types for r in records])
    edge_ids = edge_index[0] * total + edge_index[1]
    edge_types = torch.zeros(edge_index.shape[1], dtype=torch.long)
    for src, dst in ((bonds[0], bonds[1]), (bonds[1], bonds[0])):
        pos = torch.searchsorted(edge_ids, src * total + dst)
        edge_types[pos] = btypes
    return MoleculeBatch(
        pos=torch.cat([r.pos for r in records]),
        atom_types=torch.cat([r.atom_types for r in records]),
        charges=torch.cat([r.charges for r in records]),
        batch=torch.repeat_interleave(torch.arange(len(records)), num_atoms),
        edge_index=edge_index,
        edge_types=edge_types,
        edge_batch=edge_batch,
        num_atoms=num_atoms,
    )


# ------------------------------------------------------------------------------------------- other formats
def _parse_qm9_xyz(text: str, name: str) -> tuple[list[int], np.ndarray]:
    """Atomic numbers and positions of one QM9 ``dsgdb9nsd_*.xyz`` record (Fortran ``*^`` exponents)."""
    lines = text.splitlines()
    try:
        n = int(lines[0].split()[0])
        atoms = [line.split() for line in lines[2 : 2 + n]]
        z = [_PT.GetAtomicNumber(a[0]) for a in atoms]
        pos = np.array([[float(v.replace("*^", "e")) for v in a[1:4]] for a in atoms], dtype=np.float64)
    except Exception:
        raise GeodiffError(f"{name}: not a QM9 xyz record") from None
    if len(z) != n or pos.shape != (n, 3):
        raise GeodiffError(f"{name}: truncated xyz record ({len(z)} of {n} atoms)")
    return z, pos


def iter_qm9_xyz(path: str | os.PathLike):
    """Yield ``(name, atomic numbers, positions)`` from a folder of QM9 xyz files or their .tar.bz2."""
    import tarfile

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.xyz"))
        if not files:
            raise GeodiffError(f"{path}: no .xyz files in this folder")
        for f in files:
            yield (f.stem, *_parse_qm9_xyz(f.read_text(), f.name))
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.name.endswith(".xyz")]
            for member in sorted(members, key=lambda m: m.name):
                text = tar.extractfile(member).read().decode()
                yield (Path(member.name).stem, *_parse_qm9_xyz(text, member.name))
    else:
        raise GeodiffError(f"{path}: expected a folder of QM9 .xyz files or their .tar.bz2 archive")


def _records_from_mols(mols, vocab, failures, progress, desc, kekulize) -> list[MoleculeRecord]:
    from tqdm import tqdm

    records = []
    for idx, name, mol in tqdm(mols, desc=desc, disable=not progress):
        if mol is None:
            failures.append((idx, f"{name}: RDKit could not read this record"))
            continue
        try:
            records.append(mol_to_record(mol, vocab, name=name, kekulize=kekulize))
        except GeodiffError as exc:
            failures.append((idx, f"{name}: {exc}"))
    return records


def dataset_from_qm9_xyz(path, limit: int | None = None, progress: bool = True,
                         kekulize: bool = True) -> MoleculeDataset:  # fmt: skip
    """QM9 from its original xyz files (folder or .tar.bz2), bonds perceived with RDKit like the npz."""
    RDLogger.DisableLog("rdApp.*")
    vocab, failures, mols = MoleculeVocabulary(QM9_ATOMS), [], []
    for idx, (name, z, pos) in enumerate(iter_qm9_xyz(path)):
        if limit is not None and idx >= limit:
            break
        try:
            mols.append((idx, name, perceive_bonds(z, pos)))
        except GeodiffError as exc:
            failures.append((idx, f"{name}: {exc}"))
    records = _records_from_mols(mols, vocab, failures, progress, "reading QM9 xyz", kekulize)
    return MoleculeDataset.from_records(records, vocab, failures=failures, source=str(path))


def dataset_from_sdf(path, vocab: MoleculeVocabulary | None = None, limit: int | None = None,
                     progress: bool = True, kekulize: bool = True) -> MoleculeDataset:  # fmt: skip
    """Molecules with bonds and charges from an SDF or a folder of SDFs (GEOM-Drugs style, or your own).

    Hydrogens are kept as written; aromatic rings are kekulized unless ``kekulize`` is false. Without
    ``vocab`` the element vocabulary is every element present, ordered by atomic number. Records RDKit
    cannot read, and atoms outside ``vocab``, are skipped and listed in ``failures``.
    """
    mols = []
    for idx, (label, mol, _) in enumerate(iter_sdf(path, sanitize=True)):
        if limit is not None and idx >= limit:
            break
        mols.append((idx, label, mol))
    if vocab is None:
        nums = sorted({a.GetAtomicNum() for _, _, m in mols if m is not None for a in m.GetAtoms()})
        if not nums:
            raise GeodiffError(f"{path}: no readable molecule")
        vocab = MoleculeVocabulary(tuple(_PT.GetElementSymbol(z) for z in nums))
    failures: list[tuple[int, str]] = []
    records = _records_from_mols(mols, vocab, failures, progress, "reading SDF", kekulize)
    return MoleculeDataset.from_records(records, vocab, failures=failures, source=str(path))
