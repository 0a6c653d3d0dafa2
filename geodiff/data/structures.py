"""The one molecule type of geodiff, and every molecule file it reads.

:class:`Molecule3D` is what data, pipelines and metrics pass around: atomic numbers (element-agnostic, so
molecules with S, Cl or P work as well as QM9's five elements), positions in Angstrom, formal charges and
bonds as ``[M, 3]`` rows ``(i, j, type)`` with ``i < j`` and type 1 single, 2 double, 3 triple, 4 aromatic
(``bonds is None``: the source had none; perceive them). ``Molecule3D.from_rdkit`` / ``.to_rdkit`` convert
to and from RDKit. A model sees a molecule through a vocabulary of classes
(:class:`geodiff.data.molecules.MoleculeRecord`, made by ``encode`` and undone by ``decode``).

One SDF reader (:func:`iter_sdf`) serves training data, the cache builder, evaluation and docking. Readers
never stop at a bad record: they return the molecules they could read and ``(record, reason)`` failures.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from geodiff.errors import GeodiffError

__all__ = [
    "Molecule3D",
    "iter_sdf",
    "read_molecules",
    "read_sdf",
    "read_sdf_rdkit",
    "read_xyz",
    "read_npz",
    "read_qm9_npz",
    "molecule_format",
    "from_rdkit",
    "to_rdkit",
    "element_symbol",
    "atomic_number",
    "mol_name",
]

QM9_NPZ_KEYS = ("num_atoms", "charges", "positions")
_PT = Chem.GetPeriodicTable()
BOND_TYPES = {
    Chem.BondType.SINGLE: 1,
    Chem.BondType.DOUBLE: 2,
    Chem.BondType.TRIPLE: 3,
    Chem.BondType.AROMATIC: 4,
}
_RDKIT_BOND = {v: k for k, v in BOND_TYPES.items()}


def element_symbol(z: int) -> str:
    return _PT.GetElementSymbol(int(z))


def atomic_number(symbol: str) -> int:
    try:
        z = _PT.GetAtomicNumber(symbol.strip().capitalize())
    except Exception:
        z = 0
    if z <= 0:
        raise GeodiffError(f"unknown element {symbol!r}")
    return z


@dataclass
class Molecule3D:
    """One molecule: atomic numbers [N], positions [N, 3] (Angstrom), formal charges [N], bonds or None."""

    atomic_numbers: np.ndarray
    pos: np.ndarray
    charges: np.ndarray = None  # type: ignore[assignment]
    bonds: np.ndarray | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64).reshape(-1)
        n = len(self.atomic_numbers)
        self.pos = np.asarray(self.pos, dtype=np.float64).reshape(n, 3)
        self.charges = (np.zeros(n, dtype=np.int64) if self.charges is None
                        else np.asarray(self.charges, dtype=np.int64).reshape(n))  # fmt: skip
        if self.bonds is not None:
            b = np.asarray(self.bonds, dtype=np.int64).reshape(-1, 3)
            lo, hi = np.minimum(b[:, 0], b[:, 1]), np.maximum(b[:, 0], b[:, 1])
            self.bonds = np.stack([lo, hi, b[:, 2]], axis=1)

    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def symbols(self) -> list[str]:
        return [element_symbol(z) for z in self.atomic_numbers]

    def with_bonds(self, bonds: np.ndarray) -> Molecule3D:
        return Molecule3D(self.atomic_numbers, self.pos, self.charges, bonds, self.name, dict(self.meta))

    def permuted(self, perm: Sequence[int]) -> Molecule3D:
        """The same molecule with atom ``k`` of the result being atom ``perm[k]`` of this one."""
        perm = np.asarray(perm)
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        bonds = None
        if self.bonds is not None:
            bonds = np.stack([inv[self.bonds[:, 0]], inv[self.bonds[:, 1]], self.bonds[:, 2]], axis=1)
        return Molecule3D(self.atomic_numbers[perm], self.pos[perm], self.charges[perm], bonds, self.name)

    @classmethod
    def from_rdkit(cls, mol: Chem.Mol, name: str = "", keep_bonds: bool = True) -> Molecule3D:
        """See :func:`from_rdkit`."""
        return from_rdkit(mol, name, keep_bonds)

    def to_rdkit(self, sanitize: bool = False, conformer: bool = True,
                 implicit_hydrogens: bool = False) -> Chem.Mol:  # fmt: skip
        """See :func:`to_rdkit`."""
        return to_rdkit(self, sanitize, conformer, implicit_hydrogens)


def from_rdkit(mol: Chem.Mol, name: str = "", keep_bonds: bool = True) -> Molecule3D:
    """Atoms, the first conformer and (when the molecule has any) bonds of an RDKit molecule."""
    if mol.GetNumConformers() == 0:
        raise GeodiffError(f"{name or 'molecule'}: no 3D coordinates")
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    if any(v == 0 for v in z):
        raise GeodiffError(f"{name or 'molecule'}: dummy atom (atomic number 0)")
    pos = mol.GetConformer().GetPositions()
    charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
    bonds = None
    if keep_bonds and mol.GetNumBonds() > 0:
        rows = []
        for b in mol.GetBonds():
            t = BOND_TYPES.get(b.GetBondType())
            if t is None:
                raise GeodiffError(f"{name or 'molecule'}: unsupported bond type {b.GetBondType()}")
            rows.append((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), t))
        bonds = np.array(rows, dtype=np.int64)
    return Molecule3D(z, pos, charges, bonds, name)


@functools.lru_cache(maxsize=4096)
def _template_atom(z: int, charge: int, implicit_hydrogens: bool) -> Chem.Atom:
    """One prepared atom per (element, charge, H mode): building a molecule then costs one call per atom."""
    a = Chem.Atom(int(z))
    a.SetFormalCharge(int(charge))
    a.SetNoImplicit(not implicit_hydrogens)
    return a


def to_rdkit(m: Molecule3D, sanitize: bool = False, conformer: bool = True,
             implicit_hydrogens: bool = False) -> Chem.Mol:  # fmt: skip
    """An RDKit molecule with the atoms, charges, bonds (if any) and (``conformer``) coordinates of ``m``.

    Hydrogens are explicit in 3D molecules, so RDKit adds none unless ``implicit_hydrogens`` (the validity
    convention of EDM, MiDi and EQGAT-diff, whose molecule builders let RDKit fill open valences)."""
    rw = Chem.RWMol()
    for z, c in zip(m.atomic_numbers.tolist(), m.charges.tolist(), strict=True):
        rw.AddAtom(_template_atom(z, c, implicit_hydrogens))  # AddAtom copies the template
    if m.bonds is not None:
        for i, j, t in m.bonds.tolist():
            rw.AddBond(int(i), int(j), _RDKIT_BOND[int(t)])
            if t == 4:
                rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
                rw.GetAtomWithIdx(int(i)).SetIsAromatic(True)
                rw.GetAtomWithIdx(int(j)).SetIsAromatic(True)
    mol = rw.GetMol()
    if m.name:
        mol.SetProp("_Name", m.name)
    if conformer:
        conf = Chem.Conformer(m.num_atoms)
        for k, p in enumerate(m.pos.tolist()):
            conf.SetAtomPosition(k, p)
        mol.AddConformer(conf, assignId=True)
    if sanitize:
        Chem.SanitizeMol(mol)
    return mol


def iter_sdf(path: str | os.PathLike, sanitize: bool = False) -> Iterator[tuple[str, Chem.Mol | None, str]]:
    """``(label, RDKit molecule or None, reason)`` for every record of an SDF, or of every ``*.sdf`` in a
    folder (sorted; empty files hold no record), hydrogens kept. ``label`` is the record's title, else
    ``file#k``; a record RDKit cannot parse (or, with ``sanitize``, sanitise) comes as ``None`` with the
    reason. Unsanitised molecules have their property cache updated leniently, so they can be read and
    written whatever their chemistry."""
    path = Path(path)
    if not path.exists():
        raise GeodiffError(f"{path}: not found")
    files = sorted(path.glob("*.sdf")) if path.is_dir() else [path]
    if not files:
        raise GeodiffError(f"{path}: no .sdf file in this folder")
    RDLogger.DisableLog("rdApp.*")
    for f in files:
        if f.is_file() and f.stat().st_size == 0:
            continue  # an empty file holds no record
        try:
            supplier = Chem.SDMolSupplier(str(f), sanitize=sanitize, removeHs=False, strictParsing=False)
            count = len(supplier)
        except OSError as exc:  # RDKit refuses empty or unreadable files outright
            yield f.name, None, f"unreadable file ({exc})"
            continue
        for k in range(count):
            label = f"{f.name}#{k + 1}"
            try:
                mol = supplier[k]
            except Exception as exc:  # some malformed blocks raise instead of returning None
                yield label, None, f"unreadable record ({type(exc).__name__})"
                continue
            if mol is None:
                yield label, None, "unreadable record" if not sanitize else "RDKit could not read this record"
                continue
            if not sanitize:
                mol.UpdatePropertyCache(strict=False)
            yield mol_name(mol) or label, mol, ""


def read_sdf(path: str | os.PathLike) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """All records of an SDF (or every ``*.sdf`` in a folder), unsanitised so invalid molecules stay in;
    records RDKit cannot parse are returned as failures."""
    mols, failures = [], []
    for label, mol, reason in iter_sdf(path):
        if mol is None:
            failures.append((label, reason))
            continue
        try:
            mols.append(from_rdkit(mol, label))
        except GeodiffError as exc:
            failures.append((label, str(exc)))
    return mols, failures


def read_sdf_rdkit(path: str | os.PathLike) -> tuple[list[Chem.Mol], list[str], list[tuple[str, str]]]:
    """``(RDKit molecules, names, failures)`` of an SDF (or a folder of them), unsanitised, hydrogens kept."""
    mols, names, failures = [], [], []
    for label, mol, reason in iter_sdf(path):
        if mol is None:
            failures.append((label, reason))
        else:
            mols.append(mol)
            names.append(label)
    return mols, names, failures


def read_xyz(path: str | os.PathLike) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """Every frame of an XYZ file (count line, comment line, ``symbol x y z`` lines), or every ``*.xyz`` of a
    folder. QM9's ``*^`` exponent notation is accepted."""
    path = Path(path)
    files = sorted(path.glob("*.xyz")) if path.is_dir() else [path]
    mols, failures = [], []
    for f in files:
        lines = f.read_text(errors="replace").splitlines()
        k = frame = 0
        while k < len(lines):
            if not lines[k].strip():
                k += 1
                continue
            frame += 1
            label = f"{f.name}#{frame}"
            try:
                n = int(lines[k].split()[0])
            except (ValueError, IndexError):
                failures.append((label, f"line {k + 1}: expected an atom count, got {lines[k][:40]!r}"))
                break  # the frame boundaries are lost; nothing after this can be trusted
            block = lines[k + 2 : k + 2 + n]
            name = lines[k + 1].strip() if k + 1 < len(lines) else ""
            k += 2 + n
            try:
                if len(block) != n:
                    raise GeodiffError(f"expected {n} atom lines, found {len(block)}")
                z, pos = [], []
                for line in block:
                    parts = line.split()
                    sym = parts[0]
                    z.append(int(sym) if sym.isdigit() else atomic_number(sym))
                    pos.append([float(x.replace("*^", "e")) for x in parts[1:4]])
                mols.append(Molecule3D(z, pos, name=name or label))
            except (GeodiffError, ValueError, IndexError) as exc:
                failures.append((label, str(exc)))
    return mols, failures


def read_npz(path: str | os.PathLike) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """An npz in the QM9/EDM layout (``num_atoms``, ``charges`` = atomic numbers, ``positions``)."""

    n, z, pos = read_qm9_npz(path)
    mols, failures = [], []
    for k in range(len(n)):
        zk = z[k, : n[k]]
        if (zk <= 0).any():
            failures.append((f"#{k}", "atomic number 0 inside num_atoms"))
            continue
        mols.append(Molecule3D(zk, pos[k, : n[k]], name=f"{Path(path).stem}#{k}"))
    return mols, failures


def molecule_format(path: str | os.PathLike) -> str | None:
    """What a molecule path holds, by its name and (for a folder) its contents: ``cache`` (a folder made by
    ``geodiff data molecules``), ``sdf``, ``xyz`` (one file, a folder of them, or a .tar / .tar.bz2 of them),
    ``npz`` (the QM9 / EDM layout), ``msgpack`` (GEOM); None when it cannot tell."""
    path = Path(path)
    if path.is_dir():
        if (path / "index.json").is_file():
            return "cache"
        return "sdf" if any(path.glob("*.sdf")) else "xyz" if any(path.glob("*.xyz")) else None
    if path.name.endswith((".tar.bz2", ".tar")):
        return "xyz"
    return {".sdf": "sdf", ".mol": "sdf", ".xyz": "xyz", ".npz": "npz", ".msgpack": "msgpack"}.get(
        path.suffix.lower()
    )


def read_molecules(path: str | os.PathLike, format: str = "auto"):
    """``(molecules, failures)`` from an SDF, XYZ or QM9-layout npz file (or a folder of SDF / XYZ files)."""
    path = Path(path)
    if not path.exists():
        raise GeodiffError(f"{path}: not found")
    if format == "auto":
        format = molecule_format(path) or "?"
    readers = {"sdf": read_sdf, "xyz": read_xyz, "npz": read_npz}
    if format not in readers:
        raise GeodiffError(f"{path}: cannot tell the format (use an .sdf, .xyz or .npz file, or format=...)")
    return readers[format](path)


def read_qm9_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(num_atoms [M], atomic_numbers [M, max_n], positions [M, max_n, 3])`` from an EDM-layout npz."""
    path = Path(path)
    if not path.is_file():
        raise GeodiffError(f"{path}: file not found")
    try:
        data = np.load(path)
    except Exception as exc:
        raise GeodiffError(f"{path}: not a readable npz file ({type(exc).__name__})") from None
    missing = [k for k in QM9_NPZ_KEYS if k not in data.files]
    if missing:
        raise GeodiffError(f"{path}: npz lacks the QM9 keys {missing} (has {sorted(data.files)[:8]})")
    n, z, pos = data["num_atoms"], data["charges"], data["positions"]
    if z.ndim != 2 or pos.shape != (*z.shape, 3) or n.shape != (z.shape[0],):
        raise GeodiffError(
            f"{path}: inconsistent shapes num_atoms {n.shape}, charges {z.shape}, positions {pos.shape}"
        )
    return n.astype(np.int64), z.astype(np.int64), pos.astype(np.float64)


def mol_name(mol: Chem.Mol) -> str:
    """An RDKit molecule's title line, or "" (also when the title is not valid UTF-8)."""
    try:
        return mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    except UnicodeDecodeError:
        return ""
