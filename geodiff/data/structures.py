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
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from geodiff.errors import GeodiffError, first_line

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
    "unreadable",
    "molblock",
    "write_sdf",
    "rdkit_unsafe",
    "MAX_ATOMS",
]

QM9_NPZ_KEYS = ("num_atoms", "charges", "positions")
MAX_ATOMS = 2000  # atoms per molecule read from a file (``max_atoms=`` of the readers and commands)
MAX_VALENCE = 8  # no element has more bonds (bond orders summed, aromatic 1.5) than osmium in OsO4
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


def _check_read(m: Molecule3D, max_atoms: int = MAX_ATOMS) -> Molecule3D:
    """``m`` if a file could sensibly hold it: 1 .. ``max_atoms`` atoms, known elements, finite positions."""
    if m.num_atoms == 0:
        raise GeodiffError("no atoms")
    if m.num_atoms > max_atoms:
        raise GeodiffError(f"{m.num_atoms} atoms, more than max_atoms={max_atoms}")
    bad = m.atomic_numbers[(m.atomic_numbers < 1) | (m.atomic_numbers > 118)]
    if bad.size:
        raise GeodiffError(f"atomic number {int(bad[0])} (elements are 1 .. 118)")
    if not np.isfinite(m.pos).all():
        raise GeodiffError("coordinates are NaN or infinite")
    if np.abs(m.pos).max() > 1e6:
        raise GeodiffError("coordinates beyond 1e6 Angstrom")
    return m


def from_rdkit(mol: Chem.Mol, name: str = "", keep_bonds: bool = True) -> Molecule3D:
    """Atoms, the first conformer and (when the molecule has any) bonds of an RDKit molecule."""
    if mol.GetNumConformers() == 0:
        raise GeodiffError(f"{name or 'molecule'}: no 3D coordinates")
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]  # by index: RDKit's sequence wrappers
    z = [a.GetAtomicNum() for a in atoms]  # cost several Python calls per item
    if 0 in z:
        raise GeodiffError(f"{name or 'molecule'}: dummy atom (atomic number 0)")
    pos = mol.GetConformer().GetPositions()
    charges = [a.GetFormalCharge() for a in atoms]
    bonds = None
    if keep_bonds and mol.GetNumBonds() > 0:
        rows = []
        for k in range(mol.GetNumBonds()):
            b = mol.GetBondWithIdx(k)
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


def _block_check(block: str, max_atoms: int) -> str:
    """Why RDKit must not parse this molfile block (too many atoms, more bonds on an atom than any element
    has: inputs that make RDKit's ring perception run out of memory or crash), or "" when it may. Reads
    the counts line and the bond lines only."""
    head = block.split("\n", 4)
    try:
        counts, rest = head[3], head[4] if len(head) > 4 else ""
        if "V3000" in counts:
            na = 0
            bonds, in_bonds = [], False
            for ln in rest.split("\n"):
                if ln.startswith("M  V30 COUNTS"):
                    na = int(ln.split()[3])
                elif ln.startswith("M  V30 BEGIN BOND"):
                    in_bonds = True
                elif ln.startswith("M  V30 END BOND"):
                    break
                elif in_bonds and ln.startswith("M  V30"):
                    f = ln.split()
                    bonds.append((int(f[3]) - 1, int(f[4]) - 1, int(f[2])))
        else:
            na, nb = int(counts[0:3]), int(counts[3:6])
            bonds = [
                (int(ln[0:3]) - 1, int(ln[3:6]) - 1, int(ln[6:9]))
                for ln in rest.split("\n", na + nb)[na : na + nb]
            ]
    except (IndexError, ValueError):
        return ""  # malformed: RDKit's parser reports it
    if na > max_atoms:
        return f"{na} atoms, more than max_atoms={max_atoms}"
    valence = [0.0] * na
    for i, j, t in bonds:
        if not (0 <= i < na and 0 <= j < na):
            return ""  # bad atom numbers: RDKit's parser reports them
        order = 1.5 if t == 4 else t if 1 <= t <= 3 else 1
        valence[i] += order
        valence[j] += order
    if valence and max(valence) > MAX_VALENCE:
        k = max(range(na), key=valence.__getitem__)
        return f"atom {k + 1} has bonds of total order {valence[k]:g}, more than any element ({MAX_VALENCE})"
    return ""


_SDF_END = re.compile(r"^\$\$\$\$[^\n]*(\n|$)", re.M)  # a line starting with $$$$ ends a record


def _sdf_blocks(f: Path, chunk: int = 1 << 22) -> Iterator[str]:
    """The records of an SDF file (the text before each line starting ``$$$$``, and a last unterminated
    one), read in 4 MB chunks: the file is never held whole. Files from 64 MB on show their progress on a
    terminal."""
    from geodiff.io import progress

    buf = ""
    size = f.stat().st_size
    bar = progress(total=size, desc=f"reading {f.name}", unit="B", show=size >= 1 << 26, unit_scale=True)
    with bar, open(f, encoding="utf-8", errors="replace") as fh:
        while True:
            data = fh.read(chunk)
            bar.update(len(data))
            buf += data
            pos = 0
            for m in _SDF_END.finditer(buf):
                if data and m.end() == len(buf) and not m.group(1):
                    break  # the $$$$ line may go on in the next chunk
                yield buf[pos : m.start()]
                pos = m.end()
            buf = buf[pos:]
            if not data:
                break
    if buf.strip():
        yield buf


def _with_properties(mol: Chem.Mol, block: str) -> Chem.Mol:
    """The SD data items after ``M  END`` (``> <name>`` then value lines up to a blank line) as properties."""
    end = block.find("M  END")
    if end < 0:
        return mol
    name, value = None, []
    for line in block[end:].split("\n")[1:]:
        if line.startswith(">"):
            lo, hi = line.find("<"), line.find(">", 1)
            name, value = (line[lo + 1 : hi] if 0 < lo < hi else None), []
        elif name is not None:
            if line.strip():
                value.append(line)
            else:
                mol.SetProp(name, "\n".join(value))
                name = None
    if name is not None:
        mol.SetProp(name, "\n".join(value))
    return mol


def iter_sdf(path: str | os.PathLike, sanitize: bool = False,
             max_atoms: int = MAX_ATOMS) -> Iterator[tuple[str, Chem.Mol | None, str]]:  # fmt: skip
    """``(label, RDKit molecule or None, reason)`` for every record of an SDF, or of every ``*.sdf`` in a
    folder (sorted; empty files hold no record), hydrogens kept, SD data items as properties. ``label`` is
    the record's title, else ``file#k``; a record RDKit cannot parse (or, with ``sanitize``, sanitise) comes
    as ``None`` with the reason. Unsanitised molecules have their property cache updated leniently, so they
    can be read and written whatever their chemistry.

    Records are read one at a time and checked before RDKit parses them: more than ``max_atoms`` atoms, or an
    atom with more bonds than any element has, is reported as a failure (such input can crash RDKit, which
    would take the whole run with it)."""
    path = Path(path)
    if not path.exists():
        raise GeodiffError(f"{path}: not found")
    files = sorted(path.glob("*.sdf")) if path.is_dir() else [path]
    if not files:
        raise GeodiffError(f"{path}: no .sdf file in this folder")
    RDLogger.DisableLog("rdApp.*")
    for f in files:
        try:
            for k, block in enumerate(_sdf_blocks(f)):
                label = f"{f.name}#{k + 1}"
                reason = _block_check(block, max_atoms)
                if reason:
                    yield (block.split("\n", 1)[0].strip() or label), None, reason
                    continue
                try:
                    mol = Chem.MolFromMolBlock(block, sanitize=sanitize, removeHs=False, strictParsing=False)
                except Exception as exc:  # some malformed blocks raise instead of returning None
                    yield label, None, f"unreadable record ({type(exc).__name__})"
                    continue
                if mol is None:
                    yield label, None, "RDKit could not read this record" if sanitize else "unreadable record"
                    continue
                if not sanitize:
                    mol.UpdatePropertyCache(strict=False)
                yield mol_name(mol) or label, _with_properties(mol, block), ""
        except OSError as exc:
            yield f.name, None, f"unreadable file ({exc})"


def read_sdf(
    path: str | os.PathLike, max_atoms: int = MAX_ATOMS
) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """All records of an SDF (or every ``*.sdf`` in a folder), unsanitised so invalid molecules stay in;
    records RDKit cannot parse, or that fail :func:`iter_sdf`'s checks, are returned as failures."""
    mols, failures = [], []
    for label, mol, reason in iter_sdf(path, max_atoms=max_atoms):
        if mol is None:
            failures.append((label, reason))
            continue
        try:
            mols.append(_check_read(from_rdkit(mol, label), max_atoms))
        except GeodiffError as exc:
            failures.append((label, str(exc)))
    return mols, failures


def read_sdf_rdkit(path: str | os.PathLike, max_atoms: int = MAX_ATOMS
                   ) -> tuple[list[Chem.Mol], list[str], list[tuple[str, str]]]:  # fmt: skip
    """``(RDKit molecules, names, failures)`` of an SDF (or a folder of them), unsanitised, hydrogens kept."""
    mols, names, failures = [], [], []
    for label, mol, reason in iter_sdf(path, max_atoms=max_atoms):
        if mol is None:
            failures.append((label, reason))
        else:
            mols.append(mol)
            names.append(label)
    return mols, names, failures


def _regular_files(path: Path, pattern: str) -> list[Path]:
    files = sorted(path.glob(pattern)) if path.is_dir() else [path]
    for f in files:
        if not f.is_file():
            raise GeodiffError(f"{f}: not a regular file")
    return files


def read_xyz(
    path: str | os.PathLike, max_atoms: int = MAX_ATOMS
) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """Every frame of an XYZ file (count line, comment line, ``symbol x y z`` lines), or every ``*.xyz`` of a
    folder, read as a stream. QM9's ``*^`` exponent notation is accepted; a frame of more than ``max_atoms``
    atoms is skipped as a failure."""
    mols, failures = [], []
    for f in _regular_files(Path(path), "*.xyz"):
        with open(f, encoding="utf-8", errors="replace") as fh:
            lines = (ln.rstrip("\r\n") for ln in fh)
            frame = 0
            for head in lines:
                if not head.strip():
                    continue
                frame += 1
                label = f"{f.name}#{frame}"
                try:
                    n = int(head.split()[0])
                    if n < 0:
                        raise ValueError
                except (ValueError, IndexError):
                    failures.append((label, f"expected an atom count, got {head[:40]!r}"))
                    break  # the frame boundaries are lost; nothing after this can be trusted
                name = next(lines, "").strip()
                if n > max_atoms:
                    failures.append((label, f"{n} atoms, more than max_atoms={max_atoms}"))
                    for _ in range(n):  # skip the frame without holding it
                        next(lines, None)
                    continue
                block = [ln for _, ln in zip(range(n), lines, strict=False)]
                try:
                    if len(block) != n:
                        raise GeodiffError(f"expected {n} atom lines, found {len(block)}")
                    z, pos = [], []
                    for line in block:
                        parts = line.split()
                        sym = parts[0]
                        z.append(int(sym) if sym.isdigit() else atomic_number(sym))
                        pos.append([float(x.replace("*^", "e")) for x in parts[1:4]])
                    mols.append(_check_read(Molecule3D(z, pos, name=name or label), max_atoms))
                except (GeodiffError, ValueError, IndexError) as exc:
                    failures.append((label, str(exc)))
    return mols, failures


def read_npz(
    path: str | os.PathLike, max_atoms: int = MAX_ATOMS
) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """An npz in the QM9/EDM layout (``num_atoms``, ``charges`` = atomic numbers, ``positions``)."""
    n, z, pos = read_qm9_npz(path)
    mols, failures = [], []
    for k in range(len(n)):
        zk = z[k, : n[k]]
        if (zk <= 0).any():
            failures.append((f"#{k}", "atomic number 0 inside num_atoms"))
            continue
        try:
            mols.append(_check_read(Molecule3D(zk, pos[k, : n[k]], name=f"{Path(path).stem}#{k}"), max_atoms))
        except GeodiffError as exc:
            failures.append((f"#{k}", str(exc)))
    return mols, failures


def molblock(m: Molecule3D) -> str:
    """``m`` as an MDL molfile (V2000 up to 999 atoms and bonds, V3000 beyond), written without RDKit so that
    any molecule, chemically sound or not, can be written: coordinates, elements, formal charges, bonds
    (type 4 = aromatic)."""
    n = m.num_atoms
    bonds = m.bonds if m.bonds is not None else np.zeros((0, 3), dtype=np.int64)
    syms = [element_symbol(z) for z in m.atomic_numbers.tolist()]
    name = m.name.replace("\n", " ")
    if n <= 999 and len(bonds) <= 999:
        out = [name, "  geodiff          3D", "", f"{n:3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000"]
        out += [f"{x:10.4f}{y:10.4f}{z:10.4f} {e:<3} 0  0  0  0  0  0  0  0  0  0  0  0"
                for (x, y, z), e in zip(m.pos.tolist(), syms, strict=True)]  # fmt: skip
        out += [f"{i + 1:3d}{j + 1:3d}{t:3d}  0" for i, j, t in bonds.tolist()]
        charged = [(k + 1, q) for k, q in enumerate(m.charges.tolist()) if q]
        for lo in range(0, len(charged), 8):
            part = charged[lo : lo + 8]
            out.append(f"M  CHG{len(part):3d}" + "".join(f"{k:4d}{q:4d}" for k, q in part))
    else:
        out = [name, "  geodiff          3D", "", "  0  0  0     0  0            999 V3000",
               "M  V30 BEGIN CTAB", f"M  V30 COUNTS {n} {len(bonds)} 0 0 0", "M  V30 BEGIN ATOM"]  # fmt: skip
        for k, ((x, y, z), e, q) in enumerate(zip(m.pos.tolist(), syms, m.charges.tolist(), strict=True)):
            out.append(f"M  V30 {k + 1} {e} {x:.4f} {y:.4f} {z:.4f} 0" + (f" CHG={q}" if q else ""))
        out += ["M  V30 END ATOM", "M  V30 BEGIN BOND"]
        out += [f"M  V30 {k + 1} {t} {i + 1} {j + 1}" for k, (i, j, t) in enumerate(bonds.tolist())]
        out += ["M  V30 END BOND", "M  V30 END CTAB"]
    return "\n".join([*out, "M  END"]) + "\n"


def write_sdf(molecules: Sequence[Molecule3D], path: str | os.PathLike) -> Path:
    """Every molecule, in order and whatever its chemistry, to an SDF (:func:`molblock`), atomically."""
    from geodiff.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for m in molecules:
            f.write(molblock(m) + "$$$$\n")
    return Path(path)


def rdkit_unsafe(mols: Sequence[Molecule3D]) -> np.ndarray:
    """Per molecule, whether RDKit must not be handed it: an atom with bonds of total order (aromatic 1.5)
    above any element's (:data:`MAX_VALENCE`), the graphs RDKit's ring perception can crash on. All
    molecules at once."""
    if not len(mols):
        return np.zeros(0, bool)
    sizes = np.array([m.num_atoms for m in mols], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts = [m.bonds + [s, s, 0] for m, s in zip(mols, starts.tolist(), strict=True)
             if m.bonds is not None and len(m.bonds)]  # fmt: skip
    if not parts:
        return np.zeros(len(mols), bool)
    b = np.concatenate(parts)
    order = np.where(b[:, 2] == 4, 1.5, np.where((b[:, 2] >= 1) & (b[:, 2] <= 3), b[:, 2], 1)).astype(float)
    total = int(sizes.sum())
    over = (np.bincount(b[:, 0], order, total) + np.bincount(b[:, 1], order, total)) > MAX_VALENCE
    return np.bincount(np.repeat(np.arange(len(mols)), sizes), over, len(mols)) > 0


def unreadable(failures: list[tuple[str, str]]) -> str:
    """``N unreadable records; first: label: reason`` for one-line messages."""
    if not failures:
        return "no records"
    label, reason = failures[0]
    return f"{len(failures)} unreadable records; first: {label}: {reason}"


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


def read_molecules(path: str | os.PathLike, format: str = "auto", max_atoms: int = MAX_ATOMS):
    """``(molecules, failures)`` from an SDF, XYZ or QM9-layout npz file (or a folder of SDF / XYZ files);
    molecules of more than ``max_atoms`` atoms are failures."""
    path = Path(path)
    if not path.exists():
        raise GeodiffError(f"{path}: not found")
    if format == "auto":
        format = molecule_format(path) or "?"
    readers = {"sdf": read_sdf, "xyz": read_xyz, "npz": read_npz}
    if format not in readers:
        raise GeodiffError(f"{path}: cannot tell the format (use an .sdf, .xyz or .npz file, or format=...)")
    return readers[format](path, max_atoms=max_atoms)


def read_qm9_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(num_atoms [M], atomic_numbers [M, max_n], positions [M, max_n, 3])`` from an EDM-layout npz.

    The arrays' decompressed size is checked before they are read (at most ``GEODIFF_MAX_NPZ_MB``, default
    4096 MB); object arrays (pickles) are never loaded."""
    from geodiff.io import check_npz_size

    path = Path(path)
    if not path.is_file():
        raise GeodiffError(f"{path}: file not found")
    check_npz_size(path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise GeodiffError(f"{path}: not a readable npz file ({type(exc).__name__})") from None
    missing = [k for k in QM9_NPZ_KEYS if k not in data.files]
    if missing:
        raise GeodiffError(f"{path}: npz lacks the QM9 keys {missing} (has {sorted(data.files)[:8]})")
    try:
        n, z, pos = data["num_atoms"], data["charges"], data["positions"]
    except Exception as exc:  # object arrays refuse to load without pickle; truncated members
        raise GeodiffError(f"{path}: unreadable arrays ({first_line(exc)})") from None
    if z.ndim != 2 or pos.shape != (*z.shape, 3) or n.shape != (z.shape[0],):
        raise GeodiffError(
            f"{path}: inconsistent shapes num_atoms {n.shape}, charges {z.shape}, positions {pos.shape}"
        )
    if not all(np.issubdtype(a.dtype, np.number) for a in (n, z, pos)):
        raise GeodiffError(f"{path}: num_atoms, charges and positions must be numeric arrays")
    if not np.issubdtype(n.dtype, np.integer) or (n < 0).any() or (n > z.shape[1]).any():
        raise GeodiffError(
            f"{path}: num_atoms must be whole numbers from 0 to {z.shape[1]} (the array width)"
        )
    return n.astype(np.int64), z.astype(np.int64), pos.astype(np.float64)


def mol_name(mol: Chem.Mol) -> str:
    """An RDKit molecule's title line, or "" (also when the title is not valid UTF-8)."""
    try:
        return mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    except UnicodeDecodeError:
        return ""
