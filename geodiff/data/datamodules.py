"""Lightning data modules, one per family, and the datasets they serve.

* :class:`MoleculeDataModule` - molecules from a QM9 npz (EDM layout, cached), QM9 xyz files or SDF.
* :class:`TrajectoryDataModule` - N-body (simulated when missing), MD17 or ETH-UCY trajectory windows;
  :func:`systems_for_sampling` cuts the same windows for sampling from an export's data record.
* :class:`RegistrationDataModule` - registration pairs generated on the fly (:class:`PairDataset`) from
  TUD-L meshes and/or procedural shapes.

Each module reads paths as given (relative to the current folder); configs point them into
``${paths.data_dir}`` (``$GEODIFF_DATA``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset

from geodiff.config import recorded_data_path, resolve_path
from geodiff.data.batching import AtomBudgetBatchSampler
from geodiff.data.cache import CachedMoleculeDataset
from geodiff.data.molecules import (
    DatasetStatistics,
    MoleculeDataset,
    MoleculeVocabulary,
    collate_molecules,
    dataset_from_qm9_xyz,
    dataset_from_sdf,
)
from geodiff.data.nbody import simulate
from geodiff.data.pairs import PairConfig, make_pair
from geodiff.data.pointclouds import load_tudl_models
from geodiff.data.shapes import procedural_mesh
from geodiff.data.structures import molecule_format
from geodiff.data.trajectories import (
    TrajectoryDataset,
    collate_trajectories,
    generate_nbody_split,
    load_eth_ucy,
    load_md17_npz,
    load_nbody_npz,
    save_nbody_npz,
)
from geodiff.errors import GeodiffError

__all__ = ["MoleculeDataModule", "PairDataset", "RegistrationDataModule", "TrajectoryDataModule",
           "systems_for_sampling"]  # fmt: skip


def _say(message: str) -> None:
    """Print once per run (process rank zero), not once per process."""
    if rank_zero_only.rank == 0:
        print(message)


# ------------------------------------------------------------------------------------------ molecules
def _detect_format(path: Path) -> str:
    names = {"cache": "cache", "npz": "qm9_npz", "sdf": "sdf", "xyz": "qm9_xyz"}
    fmt = names.get(molecule_format(path) or "")
    if fmt is None:
        raise GeodiffError(
            f"data: cannot tell the format of {path} (set data.format: cache, qm9_npz, qm9_xyz, sdf)"
        )
    return fmt


class MoleculeDataModule(L.LightningDataModule):
    """Molecules from a preprocessed cache (``geodiff data molecules``: GEOM-size data, read by rows, its own
    molecule-level train / val splits), a QM9 npz (EDM layout, cached), QM9 xyz files, or SDF; bonds are
    perceived with RDKit where the format has none; for the non-cache formats a seeded random validation
    split. ``num_workers`` > 0 loads batches in worker processes."""

    def __init__(self, path: str, format: str = "auto", cache_dir: str | None = ".cache/geodiff",
                 limit: int | None = None, atoms: list[str] | None = None,
                 val_fraction: float = 0.05, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0, kekulize: bool = True, max_atoms: int | None = None,
                 max_edges: int | None = None):  # fmt: skip
        super().__init__()
        self.path, self.format, self.cache_dir, self.limit = path, format, cache_dir, limit
        self.max_atoms, self.max_edges = max_atoms, max_edges  # adaptive batches (instead of batch_size)
        self.kekulize = kekulize
        self.atoms = tuple(atoms) if atoms else None  # fixed element vocabulary for SDF input
        self.val_fraction, self.batch_size, self.num_workers, self.seed = (
            val_fraction,
            batch_size,
            num_workers,
            seed,
        )
        self.dataset: MoleculeDataset | None = None

    def prepare(self) -> MoleculeDataset:
        if self.dataset is None:
            path = Path(self.path)
            if not path.exists():
                raise GeodiffError(f"data: {self.path} not found (the training data: set data.path=FILE or "
                                   "GEODIFF_DATA to the folder that holds it)")  # fmt: skip
            fmt = _detect_format(path) if self.format == "auto" else self.format
            if fmt == "cache":  # the cache's own splits, by molecule
                self.dataset = CachedMoleculeDataset(path, "train")
                self.val_dataset = CachedMoleculeDataset(path, "val")
                n = len(self.dataset) if self.limit is None else min(self.limit, len(self.dataset))
                self.train_idx, self.val_idx = list(range(n)), list(range(len(self.val_dataset)))
                return self.dataset
            if fmt == "qm9_npz":
                self.dataset = MoleculeDataset.from_qm9_npz(path, cache_dir=self.cache_dir, limit=self.limit,
                                                            kekulize=self.kekulize)  # fmt: skip
            elif fmt == "qm9_xyz":
                self.dataset = dataset_from_qm9_xyz(path, limit=self.limit, kekulize=self.kekulize)
            elif fmt == "sdf":
                vocab = MoleculeVocabulary(self.atoms) if self.atoms else None
                self.dataset = dataset_from_sdf(path, vocab=vocab, limit=self.limit, kekulize=self.kekulize)
            else:
                raise GeodiffError(f"data.format: expected auto, cache, qm9_npz, qm9_xyz or sdf, got {fmt!r}")
            if self.dataset.failures:
                total = len(self.dataset) + len(self.dataset.failures)
                _say(f"data: skipped {len(self.dataset.failures)} of {total} "
                      "molecules whose bonds RDKit could not perceive")  # fmt: skip
            n = len(self.dataset)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_val = max(1, int(round(self.val_fraction * n))) if self.val_fraction > 0 else 0
            self.val_idx, self.train_idx = perm[:n_val], perm[n_val:]
        return self.dataset

    def prepare_data(self) -> None:
        """Once per node, before the processes of a multi-process run set up: perceive bonds and write the
        cache (the other processes then read it)."""
        self.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def run_notes(self) -> dict:
        """What the export's run record says about the data."""
        notes = {"bonds": "Kekule form (data.kekulize=true)" if self.kekulize else "aromatic bonds kept"}
        if self.shards_itself:
            notes["batch_size"] = (
                f"adaptive: at most {self.max_atoms or '-'} atoms, {self.max_edges or '-'} edges"
            )
        return notes

    @property
    def statistics(self) -> DatasetStatistics:
        ds = self.prepare()
        if isinstance(ds, CachedMoleculeDataset):  # computed over the training split when it was built
            return ds.statistics()
        return MoleculeDataset.from_records([ds[i] for i in self.train_idx], ds.vocab).statistics()

    def training_molecules(self):
        """The training split as :class:`~geodiff.data.structures.Molecule3D` with the bonds training sees
        (a generator: GEOM-size splits are read row by row; from a cache, one conformer per molecule)."""
        ds = self.prepare()
        idx = np.asarray(self.train_idx, dtype=np.int64)
        if isinstance(ds, CachedMoleculeDataset) and len(idx):
            ids = ds.molecule_ids()[idx]
            idx = idx[np.r_[True, ids[1:] != ids[:-1]]]
        return (ds[int(i)].decode(ds.vocab) for i in idx)

    @property
    def shards_itself(self) -> bool:
        """With an atom / edge budget the batch sampler splits batches between processes itself (the
        trainer must not add a distributed sampler)."""
        return self.max_atoms is not None or self.max_edges is not None

    def _loader(self, dataset, idx, shuffle):
        common = {"collate_fn": collate_molecules, "num_workers": self.num_workers,
                  "persistent_workers": self.num_workers > 0}  # fmt: skip
        if not self.shards_itself:
            return DataLoader(Subset(dataset, idx), batch_size=self.batch_size, shuffle=shuffle, **common)
        if isinstance(dataset, CachedMoleculeDataset):
            sizes = dataset.num_atoms()[idx]
        else:
            sizes = torch.diff(dataset.t["atom_ptr"]).numpy()[idx]
        sampler = AtomBudgetBatchSampler(
            sizes, self.max_atoms, self.max_edges, shuffle=shuffle, seed=self.seed
        )
        return DataLoader(Subset(dataset, idx), batch_sampler=sampler, **common)

    def train_dataloader(self):
        return self._loader(self.prepare(), self.train_idx, True)

    def val_dataloader(self):
        ds = self.prepare()
        return self._loader(getattr(self, "val_dataset", None) or ds, self.val_idx, False)


# ---------------------------------------------------------------------------------------- trajectories
class TrajectoryDataModule(L.LightningDataModule):
    """Trajectories for GeoTDM: ``dataset`` = ``nbody`` | ``md17`` | ``eth_ucy`` (see the module docstring).

    Args:
        path: N-body folder, MD17 npz or ETH-UCY root.
        num_cond, num_target: observed and predicted frames (unconditional: ``num_cond=0``).
        kind, num_train, num_val, num_test, sim_seed: N-body simulation when ``path`` does not exist.
        frame_offset: first N-body frame of the window.
        scene: ETH-UCY test scene (leave-one-out); windows: ETH-UCY ``sgan`` (all agents of a window) or
            ``eqmotion`` (a window per focal agent, GeoTDM's paper protocol; ``load_eth_ucy``).
        stride, window_step: MD17 frame subsampling.
        limit: use at most this many training systems (CPU smoke runs).
    """

    def __init__(self, dataset: str = "nbody", path: str = "data/nbody_charged", num_cond: int = 10,
                 num_target: int = 20, kind: str = "charged", num_train: int = 3000, num_val: int = 500,
                 num_test: int = 500, sim_seed: int = 0, frame_offset: int = 0, scene: str = "eth",
                 stride: int = 10, window_step: int | None = None, limit: int | None = None,
                 val_limit: int | None = None, batch_size: int = 128, num_workers: int = 0,
                 windows: str = "sgan"):  # fmt: skip
        super().__init__()
        if windows not in ("sgan", "eqmotion"):
            raise GeodiffError(f"data.windows: expected sgan or eqmotion, got {windows!r}")
        self.windows = windows
        if dataset not in ("nbody", "md17", "eth_ucy"):
            raise GeodiffError(f"data.dataset: expected nbody, md17 or eth_ucy, got {dataset!r}")
        self.dataset, self.path, self.num_cond, self.num_target = dataset, path, num_cond, num_target
        self.kind, self.num_train, self.num_val, self.num_test, self.sim_seed = (
            kind, num_train, num_val, num_test, sim_seed)  # fmt: skip
        self.frame_offset, self.scene, self.stride, self.window_step = (
            frame_offset,
            scene,
            stride,
            window_step,
        )
        self.limit, self.val_limit, self.batch_size, self.num_workers = (
            limit,
            val_limit,
            batch_size,
            num_workers,
        )
        self._splits: dict[str, TrajectoryDataset] = {}

    @classmethod
    def from_record(cls, info: dict, path: str | None = None) -> TrajectoryDataModule:
        """The data module an export's data record (:meth:`describe`) describes, reading ``path`` instead
        of the recorded path when given: sampling cuts its windows exactly as training did. A recorded path
        that does not exist here (the machine the model was trained on) is looked up by its last part in
        the data folder (``$GEODIFF_DATA``): ``.../eth_ucy`` -> ``$GEODIFF_DATA/eth_ucy``."""
        dataset = info.get("dataset")
        if dataset not in ("nbody", "md17", "eth_ucy"):
            raise GeodiffError(f"checkpoint: unknown trajectory data set {dataset!r}")
        if path is None and info.get("path"):
            path = str(recorded_data_path(info["path"]))
        kw = {
            "dataset": dataset,
            "path": str(path),
            "num_cond": int(info.get("num_cond", 0)),
            "num_target": int(info.get("num_target", 0)),
            "frame_offset": int(info.get("frame_offset") or 0),
        }
        # recorded only for their own data set; exports from before a field was recorded get the default
        for key in ("kind", "scene", "stride", "window_step", "windows"):
            if info.get(key) is not None:
                kw[key] = info[key]
        return cls(**kw)

    def load_split(self, name: str, limit: int | None = None) -> TrajectoryDataset:
        """Read the ``train``, ``val`` or ``test`` split (at most ``limit`` windows) from ``path``; an N-body
        ``path`` may also be a single npz, read whatever ``name``."""
        if self.dataset == "nbody":
            p = Path(self.path)
            return load_nbody_npz(p / f"{name}.npz" if p.is_dir() else p, self.num_cond, self.num_target,
                                  self.frame_offset, limit)  # fmt: skip
        if self.dataset == "md17":
            return load_md17_npz(self.path, name, self.num_cond, self.num_target, self.stride,
                                 self.window_step, limit=limit)  # fmt: skip
        return load_eth_ucy(self.path, self.scene, name, self.num_cond, self.num_target, limit=limit,
                            windows=self.windows)  # fmt: skip

    def split(self, name: str) -> TrajectoryDataset:
        """The ``train``, ``val`` or ``test`` data set (loaded once)."""
        if name not in self._splits:
            if self.dataset == "nbody":
                folder = Path(self.path)
                if folder.is_file():
                    raise GeodiffError(f"data.path: {folder} is a file; training reads an N-body folder "
                                       "of train/val/test.npz (geodiff data nbody)")  # fmt: skip
                if not folder.exists():
                    _say(f"data: {folder} does not exist; simulating {self.kind} systems into it")
                    generate_nbody_split(folder, self.kind, self.num_train, self.num_val, self.num_test,
                                         self.sim_seed)  # fmt: skip
            self._splits[name] = self.load_split(name, self.limit if name == "train" else self.val_limit)
        return self._splits[name]

    def describe(self) -> dict:
        ds = self.split("train")
        return {"dataset": self.dataset, "name": ds.name,
                "kind": self.kind if self.dataset == "nbody" else None,
                "scene": self.scene if self.dataset == "eth_ucy" else None, "path": str(self.path),
                "windows": self.windows if self.dataset == "eth_ucy" else None,
                "stride": self.stride if self.dataset == "md17" else None,
                "window_step": self.window_step if self.dataset == "md17" else None,
                "num_cond": self.num_cond, "num_target": self.num_target, "dim": ds.dim,
                "node_dim": ds.node_dim, "edge_dim": ds.edge_dim, "num_train": len(ds),
                "frame_offset": self.frame_offset}  # fmt: skip

    def prepare_data(self) -> None:
        """Once per node, before the processes of a multi-process run set up: simulate a missing N-body
        folder (one process writes it; the others then read it)."""
        if self.dataset == "nbody" and not Path(self.path).exists():
            self.split("train")

    def setup(self, stage: str | None = None) -> None:
        self.split("train")
        self.split("val")

    def _loader(self, ds, shuffle):
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate_trajectories,
                          num_workers=self.num_workers)  # fmt: skip

    def train_dataloader(self):
        return self._loader(self.split("train"), True)

    def val_dataloader(self):
        return self._loader(self.split("val"), False)


def systems_for_sampling(info: dict, data: str | None = None, split: str = "test",
                         num_systems: int | None = None,
                         seed: int = 0) -> TrajectoryDataset:  # fmt: skip
    """The systems to forecast (or to take node features and graphs from, for unconditional models).

    ``data`` may be an N-body npz or folder, an MD17 npz or an ETH-UCY root (the kind the model was trained
    on); with ``data=None`` an N-body model gets ``num_systems`` freshly simulated systems (``seed``) and
    the others read the ``split`` of the data they were trained on.
    """
    dm = TrajectoryDataModule.from_record(info, data)  # the windows exactly as training cut them
    frames = dm.num_cond + dm.num_target
    if dm.dataset == "nbody" and data is None:
        kind = info.get("kind") or "charged"
        sim = simulate(int(num_systems or 100), kind, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            dm.path = str(save_nbody_npz(sim, Path(tmp) / "fresh.npz", kind))
            ds = dm.load_split(split)
        ds.source = f"{len(ds)} freshly simulated {kind} systems (seed {seed})"
    else:
        ds = dm.load_split(split, num_systems)
    if ds.num_frames < frames:
        raise GeodiffError(f"{ds.source}: {ds.num_frames} frames, the model needs {frames}")
    if num_systems is not None and len(ds) > num_systems:
        ds.samples = ds.samples[:num_systems]
    return ds


# ---------------------------------------------------------------------------------------- registration
class PairDataset(Dataset):
    """``length`` pairs drawn from ``objects`` (dicts with ``mesh``, ``diameter``, ``unit``) and procedural
    shapes. ``seed=None`` draws fresh pairs every time (training; seeded through torch's RNG, which
    Lightning seeds per worker); an integer seed fixes pair ``i`` (validation)."""

    def __init__(self, objects: list[dict], length: int, num_points: int = 512, max_angle: float = 180.0,
                 max_translation: float = 0.5, noise: float = 0.01, keep: float = 0.7,
                 noisy_fraction: float = 0.5, partial_fraction: float = 0.5, procedural_fraction: float = 0.5,
                 seed: int | None = None):  # fmt: skip
        if not objects and procedural_fraction < 1:
            raise GeodiffError("registration data: no object meshes and procedural_fraction < 1")
        self.objects, self.length, self.seed = objects, int(length), seed
        self.num_points, self.max_angle, self.max_translation = num_points, max_angle, max_translation
        self.noise, self.keep = noise, keep
        self.noisy, self.partial, self.procedural = noisy_fraction, partial_fraction, procedural_fraction

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        else:
            rng = np.random.default_rng([self.seed, i])
        if not self.objects or rng.random() < self.procedural:
            obj, diameter, unit = procedural_mesh(rng), 2.0, "unitless"
        else:
            o = self.objects[int(rng.integers(len(self.objects)))]
            obj, diameter, unit = o["mesh"], o["diameter"], o.get("unit", "mm")
        partial = rng.random() < self.partial
        keep = self.keep if partial else 1.0
        cfg = PairConfig(num_points=int(np.ceil(self.num_points / keep)), max_angle=self.max_angle,
                         max_translation=self.max_translation,
                         noise=self.noise if rng.random() < self.noisy else 0.0, keep=keep,
                         num_model_points=256)  # fmt: skip
        p = make_pair(obj, cfg, rng, diameter, unit)
        n = self.num_points
        return {
            "source": torch.as_tensor(p.source[:n], dtype=torch.float32),
            "target": torch.as_tensor(p.target[:n], dtype=torch.float32),
            "pose": torch.as_tensor(p.pose, dtype=torch.float32),
            "model": torch.as_tensor(p.model, dtype=torch.float32),
            "diameter": torch.tensor(p.diameter, dtype=torch.float32),
        }


class RegistrationDataModule(L.LightningDataModule):
    """Registration pairs from a TUD-L (BOP) models folder and/or procedural shapes, generated on the fly.

    Args:
        models_dir: BOP ``models`` folder (``obj_*.ply`` + ``models_info.json``); ``null`` = procedural only.
        train_pairs / val_pairs: pairs per training epoch / in the fixed validation set.
        The rest: see :class:`PairDataset`.
    """

    def __init__(self, models_dir: str | None = None, num_points: int = 512,
                 max_angle: float = 180.0, max_translation: float = 0.5, noise: float = 0.01,
                 keep: float = 0.7,
                 noisy_fraction: float = 0.5, partial_fraction: float = 0.5, procedural_fraction: float = 0.5,
                 train_pairs: int = 2000, val_pairs: int = 64, batch_size: int = 8, num_workers: int = 0,
                 val_seed: int = 12345):  # fmt: skip
        super().__init__()
        self.models_dir = models_dir
        self.kw = dict(num_points=num_points, max_angle=max_angle, max_translation=max_translation,
                       noise=noise, keep=keep, noisy_fraction=noisy_fraction,
                       partial_fraction=partial_fraction,
                       procedural_fraction=procedural_fraction)  # fmt: skip
        self.train_pairs, self.val_pairs, self.val_seed = train_pairs, val_pairs, val_seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self._objects: list[dict] | None = None

    def objects(self) -> list[dict]:
        if self._objects is None:
            if self.models_dir:
                self._objects = [dict(o, unit="mm") for o in load_tudl_models(resolve_path(self.models_dir))]
            else:
                self._objects = []
        return self._objects

    def describe(self) -> dict:
        return {"models_dir": str(self.models_dir) if self.models_dir else None,
                "objects": [o["name"] for o in self.objects()], "train_pairs_per_epoch": self.train_pairs,
                "batch_size": self.batch_size, **self.kw}  # fmt: skip

    def train_dataloader(self):
        ds = PairDataset(self.objects(), self.train_pairs, **self.kw)
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def val_dataloader(self):
        ds = PairDataset(self.objects(), self.val_pairs, seed=self.val_seed, **self.kw)
        return DataLoader(ds, batch_size=max(self.batch_size, 16), num_workers=0)
