"""Preprocessed molecule caches for GEOM-size data: sharded NumPy arrays with an index, read by rows.

``geodiff data molecules input=... output=DIR`` reads SDF (one or many conformers per molecule, a file or a
folder), QM9 (EDM's npz) or GEOM's msgpack release (``drugs_crude.msgpack`` / ``qm9_crude.msgpack``, read
with ``msgpack``, never pickle) once, keeps the ``conformers`` lowest-energy conformers of every molecule,
splits by molecule (all conformers of a molecule land in one split: no conformer of a test molecule is
trained on), and writes::

    DIR/index.json                       format, version, vocabulary, statistics, splits -> shards (+ sha256)
    DIR/<split>/shard_00000/<field>.npy  pos [A, 3] float32, atom_types / charges [A] int8,
                                         bond_index [B, 2] int32 (i < j, local), bond_types [B] int8,
                                         atom_ptr / bond_ptr [M + 1] int64, mol_id [M] int64,
                                         name [M] (conformer titles, fixed-width unicode)

Why NumPy shards: plain ``.npy`` arrays that any tool reads, with no database server or extra dependency;
a record is read with a few ``os.pread`` calls of exactly its rows, so a training process (and each
data-loader worker) holds only the records it is building, whatever the dataset size (the file pages stay in
the kernel's page cache, shared and reclaimable). Each shard's checksum is verified the first time a process
opens it. ``index.json`` is written last, so an interrupted build leaves no usable cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from geodiff.data.molecules import (
    DatasetStatistics,
    MoleculeRecord,
    MoleculeVocabulary,
    mol_to_record,
    perceive_bonds,
)
from geodiff.data.structures import iter_sdf, mol_name, molecule_format, read_qm9_npz
from geodiff.errors import GeodiffError
from geodiff.io import atomic_path

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "CachedMoleculeDataset", "GEOM_DRUGS_ATOMS", "build_cache",
           "describe_cache", "iter_conformers", "read_index"]  # fmt: skip

CACHE_FORMAT = "geodiff-molecule-cache"
CACHE_VERSION = 1
FIELDS = (
    "pos",
    "atom_types",
    "charges",
    "bond_index",
    "bond_types",
    "atom_ptr",
    "bond_ptr",
    "mol_id",
    "name",
)
# GEOM-Drugs elements (EDM / MiDi / EQGAT-diff vocabulary)
GEOM_DRUGS_ATOMS = ("H", "B", "C", "N", "O", "F", "Al", "Si", "P", "S", "Cl", "As", "Br", "I", "Hg", "Bi")
ENERGY_KEYS = ("totalenergy", "energy", "Energy", "E", "boltzmannweight")
MAX_MSGPACK_MB = 2048  # largest single msgpack object (a GEOM chunk) read (GEODIFF_MAX_MSGPACK_MB overrides)


# ------------------------------------------------------------------------------------------------ inputs
def iter_conformers(path: str | os.PathLike, fmt: str = "auto", vocab: MoleculeVocabulary | None = None,
                    kekulize: bool = True
                    ) -> Iterator[tuple[str, float | None, MoleculeRecord | str]]:  # fmt: skip
    """``(molecule key, energy or None, record)`` for every conformer of ``path``, or ``(key, None, reason)``
    for one that cannot be used (unreadable, bonds not perceived, an element outside ``vocab``). Conformers
    of one molecule come one after the other."""
    path = Path(path)
    if not path.exists():
        raise GeodiffError(f"input: {path} not found")
    fmt = _format_of(path) if fmt == "auto" else fmt
    vocab = vocab or MoleculeVocabulary(GEOM_DRUGS_ATOMS)
    if fmt == "sdf":
        yield from _iter_sdf(path, vocab, kekulize)
    elif fmt == "msgpack":
        yield from _iter_msgpack(path, vocab, kekulize)
    elif fmt == "qm9_npz":
        num_atoms, numbers, positions = read_qm9_npz(path)
        for i, n in enumerate(num_atoms):
            yield _perceived(f"qm9_{i}", None, numbers[i, :n], positions[i, :n], 0, vocab, kekulize)
    else:
        raise GeodiffError(f"format: expected auto, sdf, msgpack or qm9_npz, got {fmt!r}")


def _format_of(path: Path) -> str:
    fmt = {"sdf": "sdf", "msgpack": "msgpack", "npz": "qm9_npz"}.get(molecule_format(path) or "")
    if fmt is None and path.is_dir() and molecule_format(path) is None:
        fmt = "sdf"  # a folder without molecule files: the SDF reader says so in one line
    if fmt is None:
        raise GeodiffError(f"input: cannot tell the format of {path} (set format=sdf, msgpack or qm9_npz)")
    return fmt


def _record(key: str, energy, mol, vocab, kekulize, name: str | None = None):
    try:
        return key, energy, mol_to_record(mol, vocab, name=name or key, kekulize=kekulize)
    except GeodiffError as exc:
        return key, None, str(exc)


def _perceived(key, energy, z, pos, charge, vocab, kekulize):
    try:
        mol = perceive_bonds(z, pos, charge)
    except GeodiffError as exc:
        return key, None, f"bonds not perceived: {exc}"
    return _record(key, energy, mol, vocab, kekulize)


def _iter_sdf(path: Path, vocab, kekulize):
    from rdkit import Chem

    found = False
    for label, mol, reason in iter_sdf(path, sanitize=True):
        if reason.startswith("unreadable file"):
            where = path / label if path.is_dir() else path
            raise GeodiffError(f"input: {where}: not a readable SDF ({reason})")
        found = True
        if mol is None:
            yield label, None, reason
            continue
        # the molecule's identity is its canonical SMILES without stereo (conformer titles differ between
        # exports, and 3D perception may give conformers of one molecule different stereo tags)
        key = Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
        energy = next((float(mol.GetProp(p)) for p in ENERGY_KEYS if mol.HasProp(p)), None)
        yield _record(key, energy, mol, vocab, kekulize, mol_name(mol) or key)
    if not found:
        raise GeodiffError(f"input: {path}: no molecules (no SDF records)")


def _iter_msgpack(path: Path, vocab, kekulize):
    import msgpack
    from rdkit import Chem

    budget_mb = float(os.environ.get("GEODIFF_MAX_MSGPACK_MB", MAX_MSGPACK_MB))
    limit = int(budget_mb * 2**20)  # one object (a GEOM chunk of molecules) holds at most this many bytes
    with open(path, "rb") as fh:
        unpacker = msgpack.Unpacker(fh, raw=False, strict_map_key=False, max_buffer_size=limit)
        try:
            for chunk in unpacker:
                if not isinstance(chunk, dict):
                    raise GeodiffError(f"input: {path}: not a GEOM msgpack file (a {type(chunk).__name__})")
                for smiles, entry in chunk.items():
                    ref = Chem.MolFromSmiles(smiles)
                    charge = Chem.GetFormalCharge(ref) if ref is not None else 0
                    for conf in (entry or {}).get("conformers", []):
                        xyz = np.asarray(conf.get("xyz", []), dtype=np.float64)
                        if xyz.ndim != 2 or xyz.shape[1] != 4:
                            yield smiles, None, "conformer without [Z, x, y, z] rows"
                            continue
                        energy = conf.get("totalenergy")
                        yield _perceived(
                            smiles, energy, xyz[:, 0].astype(int), xyz[:, 1:], charge, vocab, kekulize
                        )
        except msgpack.exceptions.BufferFull:
            raise GeodiffError(f"input: {path}: a msgpack object larger than {budget_mb:g} MB "
                               "(set GEODIFF_MAX_MSGPACK_MB to allow more)") from None  # fmt: skip
        except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, msgpack.exceptions.StackError,
                ValueError) as exc:  # fmt: skip
            raise GeodiffError(f"input: {path}: malformed msgpack ({type(exc).__name__})") from None
    if unpacker.tell() != path.stat().st_size:
        size = path.stat().st_size
        raise GeodiffError(f"input: {path}: truncated msgpack ({unpacker.tell()} of {size} bytes read)")


def select_conformers(items: Iterable, keep: int | None) -> Iterator[tuple[str, list, list]]:
    """Group consecutive conformers by molecule key; per molecule ``(key, kept records, failures)``: the
    ``keep`` lowest-energy records (all when None; file order where energies are missing)."""
    key, group, bad = None, [], []

    def flush():
        order = sorted(range(len(group)), key=lambda i: (group[i][0] is None, group[i][0] or 0.0, i))
        return key, [group[i][1] for i in order[:keep]], bad

    for k, energy, rec in items:
        if k != key and key is not None:
            yield flush()
            group, bad = [], []
        key = k
        if isinstance(rec, str):
            bad.append(rec)
        else:
            group.append((energy, rec))
    if key is not None:
        yield flush()


def split_of(key: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """``train``, ``val`` or ``test`` for a molecule, from a seeded hash of its key (stable for any order)."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


# ------------------------------------------------------------------------------------------------ writing
class _ShardWriter:
    def __init__(self, folder: Path):
        self.folder, self.k, self.shards = folder, 0, []
        self._reset()

    def _reset(self):
        self.parts = {f: [] for f in FIELDS if f not in ("atom_ptr", "bond_ptr")}
        self.n_atoms, self.n_bonds = [0], [0]

    def add(self, rec: MoleculeRecord, mol_id: int) -> None:
        self.parts["pos"].append(rec.pos.numpy().astype(np.float32))
        self.parts["atom_types"].append(rec.atom_types.numpy().astype(np.int8))
        self.parts["charges"].append(rec.charges.numpy().astype(np.int8))
        self.parts["bond_index"].append(rec.bond_index.numpy().T.astype(np.int32))
        self.parts["bond_types"].append(rec.bond_types.numpy().astype(np.int8))
        self.parts["mol_id"].append(np.array([mol_id], dtype=np.int64))
        self.parts["name"].append(np.array([rec.name]))
        self.n_atoms.append(self.n_atoms[-1] + rec.pos.shape[0])
        self.n_bonds.append(self.n_bonds[-1] + rec.bond_types.shape[0])

    def __len__(self) -> int:
        return len(self.n_atoms) - 1

    def flush(self) -> None:
        if not len(self):
            return
        d = self.folder / f"shard_{self.k:05d}"
        d.mkdir(parents=True, exist_ok=True)
        arrays = {f: np.concatenate(v) if v else np.zeros(0) for f, v in self.parts.items()}
        arrays["bond_index"] = arrays["bond_index"].reshape(-1, 2).astype(np.int32)
        arrays["name"] = np.asarray(arrays["name"], dtype=str)  # fixed-width unicode: no pickle
        arrays["atom_ptr"] = np.asarray(self.n_atoms, dtype=np.int64)
        arrays["bond_ptr"] = np.asarray(self.n_bonds, dtype=np.int64)
        for f in FIELDS:  # row-major on disk: readers take rows as byte ranges
            np.save(d / f"{f}.npy", np.ascontiguousarray(arrays[f]))
        self.shards.append({"dir": f"{self.folder.name}/{d.name}", "num_conformers": len(self),
                            "num_atoms": int(self.n_atoms[-1]), "sha256": shard_checksum(d)})  # fmt: skip
        self.k += 1
        self._reset()


def shard_checksum(folder: Path) -> str:
    h = hashlib.sha256()
    for f in FIELDS:
        with open(folder / f"{f}.npy", "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def build_cache(path: str | os.PathLike, output: str | os.PathLike, fmt: str = "auto",
                atoms: Iterable[str] | None = None, conformers: int | None = 5,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                shard_size: int = 10000, kekulize: bool = True, progress: bool = True) -> dict:  # fmt: skip
    """Read ``path`` once and write the cache folder ``output`` (see the module docstring); returns the index.
    ``atoms``: the element vocabulary (default GEOM-Drugs' 16); ``conformers``: lowest-energy conformers kept
    per molecule (None: all)."""
    from tqdm import tqdm

    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise GeodiffError(
            f"fractions: need three non-negative fractions summing to 1, got {list(fractions)}"
        )
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise GeodiffError(f"shard_size: must be a positive integer, got {shard_size!r}")
    if conformers is not None and conformers < 1:
        raise GeodiffError(f"conformers: need at least 1 per molecule (or null for all), got {conformers}")
    out = Path(output)
    if (out / "index.json").exists() or (out.exists() and any(out.iterdir())):
        raise GeodiffError(f"output: {out} is not empty (a cache is written into a new folder)")
    vocab = MoleculeVocabulary(tuple(atoms) if atoms else GEOM_DRUGS_ATOMS)
    writers = {s: _ShardWriter(out / s) for s in ("train", "val", "test")}
    counts = {s: {"molecules": 0, "conformers": 0} for s in writers}
    stats = _StatsAccumulator(vocab)
    failures, num_failures, mol_id = [], 0, 0
    bar = tqdm(desc="caching molecules", unit="mol", disable=not progress)
    try:
        items = iter_conformers(path, fmt, vocab, kekulize)
        for key, kept, bad in select_conformers(items, conformers):
            num_failures += len(bad)
            failures.extend({"molecule": key, "reason": r} for r in bad[: max(0, 100 - len(failures))])
            if not kept:
                continue
            split = split_of(key, seed, fractions)
            w = writers[split]
            for rec in kept:
                w.add(rec, mol_id)
                if split == "train":
                    stats.add(rec)
                if len(w) >= shard_size:
                    w.flush()
            counts[split]["molecules"] += 1
            counts[split]["conformers"] += len(kept)
            mol_id += 1
            bar.update(1)
        for w in writers.values():
            w.flush()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written cache
        raise
    finally:
        bar.close()
    if mol_id == 0:
        shutil.rmtree(out, ignore_errors=True)
        raise GeodiffError(f"input: {path}: no usable molecules ({num_failures} conformers failed)")
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "source": str(path), "vocab": vocab.to_dict(),
             "conformers_per_molecule": conformers, "fractions": list(fractions), "seed": seed,
             "statistics": stats.result().to_dict() if counts["train"]["conformers"] else None,
             "num_failures": num_failures, "failures": failures,
             "splits": {s: {**counts[s], "shards": w.shards} for s, w in writers.items()}}  # fmt: skip
    with atomic_path(out / "index.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")
    return index


class _StatsAccumulator:
    """Training marginals and the atom-count histogram, accumulated conformer by conformer."""

    def __init__(self, vocab: MoleculeVocabulary):
        self.atom = np.zeros(len(vocab.atoms))
        self.charge = np.zeros(len(vocab.charges))
        self.bond = np.zeros(len(vocab.bonds))
        self.hist: dict[int, int] = {}

    def add(self, rec: MoleculeRecord) -> None:
        n = rec.pos.shape[0]
        self.atom += np.bincount(rec.atom_types.numpy(), minlength=len(self.atom))
        self.charge += np.bincount(rec.charges.numpy(), minlength=len(self.charge))
        b = np.bincount(rec.bond_types.numpy(), minlength=len(self.bond)).astype(float)
        b[0] = n * (n - 1) // 2 - b[1:].sum()
        self.bond += b
        self.hist[n] = self.hist.get(n, 0) + 1

    def result(self) -> DatasetStatistics:
        def norm(x):
            return (x / x.sum()).tolist()

        return DatasetStatistics(
            norm(self.atom), norm(self.charge), norm(self.bond), dict(sorted(self.hist.items()))
        )


def describe_cache(index: dict, output: str | os.PathLike) -> str:
    """One line: the splits' molecule and conformer counts and the skipped conformers."""
    sizes = ", ".join(f"{s} {v['molecules']} molecules / {v['conformers']} conformers"
                      for s, v in index["splits"].items())  # fmt: skip
    return f"cache {output}: {sizes}; {index['num_failures']} conformers skipped"


# ------------------------------------------------------------------------------------------------ reading
def read_index(path: str | os.PathLike) -> dict:
    """A cache's index, or a one-line error (not a cache, another format version, unreadable)."""
    f = Path(path) / "index.json"
    if not f.is_file():
        raise GeodiffError(f"cache: {path} has no index.json (make one with `geodiff data molecules`)")
    try:
        index = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise GeodiffError(f"cache: {f} unreadable ({type(exc).__name__})") from None
    if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
        found = f"{index.get('format')!r} version {index.get('version')!r}"
        raise GeodiffError(f"cache: {path} is {found}; this geodiff reads version {CACHE_VERSION} "
                           "(rebuild it with `geodiff data molecules`)")  # fmt: skip
    return index


class CachedMoleculeDataset(torch.utils.data.Dataset):
    """One split of a cache as a dataset of :class:`MoleculeRecord`. Shards are opened on first use
    in each process (data-loader workers included; the dataset pickles as paths) and checked against the
    index's checksum then."""

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        self.path = Path(path)
        self.index = read_index(self.path)
        if split not in self.index["splits"]:
            raise GeodiffError(f"cache: no split {split!r} (have {', '.join(self.index['splits'])})")
        self.split = split
        self.shards = self.index["splits"][split]["shards"]
        self.vocab = MoleculeVocabulary.from_dict(self.index["vocab"])
        self.offsets = np.cumsum([0] + [s["num_conformers"] for s in self.shards])
        self._open: dict[int, dict[str, _Field]] = {}

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def statistics(self) -> DatasetStatistics:
        s = self.index.get("statistics")
        if s is None:
            raise GeodiffError(f"cache: {self.path} has no training molecules to take statistics from")
        return DatasetStatistics.from_dict(s)

    def num_atoms(self) -> np.ndarray:
        """Atoms of every conformer of the split (reads only the ``atom_ptr`` arrays)."""
        if not self.shards:
            return np.zeros(0, dtype=np.int64)
        ptrs = [
            self._arrays(k)["atom_ptr"].rows(0, s["num_conformers"] + 1) for k, s in enumerate(self.shards)
        ]
        return np.concatenate([np.diff(p) for p in ptrs])

    def molecule_ids(self) -> np.ndarray:
        """The molecule id of every conformer of the split (reads only the ``mol_id`` arrays; a molecule's
        conformers are consecutive)."""
        if not self.shards:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(
            [self._arrays(k)["mol_id"].rows(0, s["num_conformers"]) for k, s in enumerate(self.shards)]
        )

    def _arrays(self, k: int) -> dict[str, _Field]:
        """Shard ``k``'s fields (checked against the index's checksum when this process first opens it)."""
        if k not in self._open:
            d = self.path / self.shards[k]["dir"]
            try:
                ok = shard_checksum(d) == self.shards[k]["sha256"]
            except OSError:
                ok = False
            if not ok:
                raise GeodiffError(
                    f"cache: shard {d} is missing or corrupt (checksum differs from the index)"
                )
            self._open[k] = {f: _Field(d / f"{f}.npy") for f in FIELDS}
        return self._open[k]

    def __getitem__(self, i: int) -> MoleculeRecord:
        if not 0 <= i < len(self):
            raise IndexError(f"conformer {i} out of range for {len(self)}")
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        a, j = self._arrays(k), i - int(self.offsets[k])
        lo, hi = (int(x) for x in a["atom_ptr"].rows(j, j + 2))
        blo, bhi = (int(x) for x in a["bond_ptr"].rows(j, j + 2))
        return MoleculeRecord(
            torch.from_numpy(a["pos"].rows(lo, hi).astype(np.float32)),
            torch.from_numpy(a["atom_types"].rows(lo, hi).astype(np.int64)),
            torch.from_numpy(a["charges"].rows(lo, hi).astype(np.int64)),
            torch.from_numpy(a["bond_index"].rows(blo, bhi).astype(np.int64).T.copy()),
            torch.from_numpy(a["bond_types"].rows(blo, bhi).astype(np.int64)),
            str(a["name"].rows(j, j + 1)[0]),
        )


class _Field:
    """One ``.npy`` array of a shard, read by rows with ``os.pread``: only the bytes asked for, into private
    memory that is freed with the record (the file's pages stay in the kernel's page cache, shared and
    reclaimable, instead of in the process's mapped memory), so a process's memory does not grow with the
    data it has read."""

    def __init__(self, path: Path):
        header = np.load(path, mmap_mode="r")  # numpy parses the header; the mapping is dropped at once
        if header.ndim > 1 and not header.flags.c_contiguous:
            raise GeodiffError(f"{path}: column-major array; rows cannot be read (rebuild the cache)")
        self.path, self.offset, self.dtype = str(path), int(header.offset), header.dtype
        self.row_shape = header.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * header.dtype.itemsize
        del header

    def rows(self, lo: int, hi: int) -> np.ndarray:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            buf = os.pread(fd, (hi - lo) * self.row_bytes, self.offset + lo * self.row_bytes)
        finally:
            os.close(fd)
        return np.frombuffer(buf, dtype=self.dtype).reshape(-1, *self.row_shape)
