"""Trajectories of interacting systems as tensors: N-body npz, MD17 (sGDML npz) and ETH-UCY text files.

A system is a :class:`TrajectorySample`: positions ``x`` ``[nodes, frames, dim]`` (``dim`` = 3, or 2 for
ETH-UCY, which the equivariant code handles natively: EGNN-style layers work in any dimension and the
plane's rotations/reflections are E(2)), invariant node features ``h`` ``[nodes, F_h]`` and a directed edge
list with invariant edge features. Batches are node-flattened with a ``batch`` vector (the PyTorch Geometric
convention), so systems of different sizes (pedestrian scenes) share a batch. The first ``num_cond``
frames of a sample are the observed (conditioning) frames, the rest the targets.

Node / edge features per data set:

=========  ==========================  ================================  =====================================
data       node features ``h``         edges                             edge features
=========  ==========================  ================================  =====================================
charged    charge (+-1)                fully connected                   q_i q_j
springs    1                           fully connected                   spring (0/1)
gravity    mass                        fully connected                   m_i m_j
md17       one-hot element (H C N O)   pairs within 3 covalent bonds     one-hot hop distance (1, 2, 3)
eth_ucy    1                           fully connected within a window   1
=========  ==========================  ================================  =====================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from geodiff.data.nbody import DEFAULTS, simulate
from geodiff.errors import GeodiffError
from geodiff.io import check_npz_size

__all__ = [
    "TrajectorySample",
    "TrajectoryBatch",
    "TrajectoryDataset",
    "collate_trajectories",
    "make_system",
    "md17_features",
    "nbody_features",
    "fully_connected",
    "load_nbody_npz",
    "save_nbody_npz",
    "load_md17_npz",
    "load_eth_ucy",
    "read_eth_ucy_file",
    "read_npz",
    "ETH_UCY_SCENES",
    "MD17_ELEMENTS",
]

ETH_UCY_SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
MD17_ELEMENTS = (1, 6, 7, 8)  # H C N O
_COVALENT_RADII = {1: 0.31, 6: 0.76, 7: 0.71, 8: 0.66}  # Angstrom (Cordero et al. 2008)


@dataclass
class TrajectorySample:
    """One system: ``x`` ``[n, frames, dim]``, ``h`` ``[n, F_h]``, ``edge_index`` ``[2, E]`` (local ids),
    ``edge_attr`` ``[E, F_e]``."""

    x: torch.Tensor
    h: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]


@dataclass
class TrajectoryBatch:
    x: torch.Tensor  # [num_nodes, frames, dim]
    h: torch.Tensor  # [num_nodes, F_h]
    edge_index: torch.Tensor  # [2, E] global node ids
    edge_attr: torch.Tensor  # [E, F_e]
    batch: torch.Tensor  # [num_nodes] system id
    num_graphs: int

    def systems(self, lo: int, hi: int) -> TrajectoryBatch:
        """Systems ``lo .. hi - 1`` as a batch of their own (node, edge and system ids renumbered from 0)."""
        hi = min(hi, self.num_graphs)
        if lo == 0 and hi == self.num_graphs:
            return self
        nodes = (self.batch >= lo) & (self.batch < hi)
        e = nodes[self.edge_index[0]]
        first = int(torch.nonzero(nodes)[0]) if bool(nodes.any()) else 0
        return TrajectoryBatch(self.x[nodes], self.h[nodes], self.edge_index[:, e] - first, self.edge_attr[e],
                               self.batch[nodes] - lo, hi - lo)  # fmt: skip

    def to(self, device) -> TrajectoryBatch:
        return TrajectoryBatch(self.x.to(device), self.h.to(device), self.edge_index.to(device),
                               self.edge_attr.to(device), self.batch.to(device), self.num_graphs)  # fmt: skip


def fully_connected(n: int) -> torch.Tensor:
    """Directed edges ``[2, n (n - 1)]`` between all distinct nodes ``0..n-1``."""
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    return torch.stack([i[keep], j[keep]])


def collate_trajectories(samples: Sequence[TrajectorySample]) -> TrajectoryBatch:
    """Concatenate systems node-wise; edge ids are offset, ``batch`` says which system a node is in."""
    if not samples:
        raise GeodiffError("collate: empty batch of trajectories")
    sizes = torch.tensor([s.num_nodes for s in samples])
    offsets = torch.cumsum(sizes, 0) - sizes
    edges = [s.edge_index + o for s, o in zip(samples, offsets.tolist(), strict=True)]
    return TrajectoryBatch(
        x=torch.cat([s.x for s in samples]),
        h=torch.cat([s.h for s in samples]),
        edge_index=torch.cat(edges, dim=1),
        edge_attr=torch.cat([s.edge_attr for s in samples]),
        batch=torch.repeat_interleave(torch.arange(len(samples)), sizes),
        num_graphs=len(samples),
    )


class TrajectoryDataset(torch.utils.data.Dataset):
    """A list of :class:`TrajectorySample` of equal frame count and dimension, with a name and origin."""

    def __init__(self, samples: list[TrajectorySample], num_cond: int, name: str = "", source: str = ""):
        if not samples:
            raise GeodiffError(f"{source or name}: no trajectories")
        frames = {s.x.shape[1:] for s in samples}
        if len(frames) != 1:
            raise GeodiffError(
                f"{source or name}: trajectories of different frame counts/dims {sorted(frames)}"
            )
        (shape,) = frames
        if not 0 <= num_cond < shape[0]:
            raise GeodiffError(f"{source or name}: num_cond {num_cond} must be below the {shape[0]} frames")
        self.samples, self.num_cond, self.name, self.source = samples, num_cond, name, source
        #: frames per trajectory and spatial dimension (equal across samples, checked above)
        self.num_frames, self.dim = shape
        #: node and edge feature widths
        self.node_dim, self.edge_dim = samples[0].h.shape[1], samples[0].edge_attr.shape[1]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> TrajectorySample:
        return self.samples[i]

    def spread_evenly(self, n: int) -> TrajectoryDataset:
        """Keep ``n`` samples spread evenly over the dataset, first and last included (all of them when
        ``n`` is 0 or not below the length): a test subset that covers the whole split, in place."""
        if 0 < n < len(self.samples):
            keep = np.linspace(0, len(self.samples) - 1, n).round().astype(int)
            self.samples = [self.samples[i] for i in keep]
        return self


# ------------------------------------------------------------------------------------------ N-body
_NBODY_PARAM = {"charged": "charges", "springs": "edges", "gravity": "masses"}


def save_nbody_npz(sim: dict[str, np.ndarray], path: str | os.PathLike, kind: str, **meta) -> Path:
    """Write a simulation (``geodiff.data.nbody.simulate`` output) atomically as npz."""
    from geodiff.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, kind=np.array(kind), **{k: v.astype(np.float32) for k, v in sim.items()},
                                **{k: np.array(v) for k, v in meta.items()})  # fmt: skip
    return Path(path)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an npz (no pickles, at most ``GEODIFF_MAX_NPZ_MB`` decompressed), or a one-line
    ``GeodiffError`` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise GeodiffError(f"{p}: file not found")
    check_npz_size(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise GeodiffError(f"{p}: not a readable npz file ({type(exc).__name__}: {exc})") from None


def load_nbody_npz(path: str | os.PathLike, num_cond: int = 10, num_target: int = 20, frame_offset: int = 0,
                   limit: int | None = None) -> TrajectoryDataset:  # fmt: skip
    """Windows ``[frame_offset, frame_offset + num_cond + num_target)`` of every simulation in an N-body npz
    (GeoTDM: 10 observed -> 20 predicted frames)."""
    z = read_npz(path)
    missing = [k for k in ("loc", "kind") if k not in z]
    if missing:
        raise GeodiffError(f"{path}: not an N-body file (missing keys {missing}; have {sorted(z)})")
    kind = str(z["kind"])
    if kind not in _NBODY_PARAM or _NBODY_PARAM[kind] not in z:
        raise GeodiffError(f"{path}: unknown N-body kind {kind!r} or missing its {_NBODY_PARAM.get(kind)!r}")
    loc = z["loc"]
    if loc.ndim != 4 or loc.shape[-1] != 3:
        raise GeodiffError(f"{path}: loc must be [systems, frames, particles, 3], got {list(loc.shape)}")
    param = z[_NBODY_PARAM[kind]]
    want = (loc.shape[0], loc.shape[2]) + ((loc.shape[2],) if kind == "springs" else ())
    if param.shape != want:
        raise GeodiffError(
            f"{path}: {_NBODY_PARAM[kind]} has shape {list(param.shape)}, expected {list(want)}"
        )
    end = frame_offset + num_cond + num_target
    if end > loc.shape[1] or frame_offset < 0:
        raise GeodiffError(
            f"{path}: needs frames {frame_offset}..{end - 1}, the file has {loc.shape[1]} frames"
        )
    if not np.isfinite(loc).all():
        bad = np.unique(np.nonzero(~np.isfinite(loc))[0])
        raise GeodiffError(f"{path}: NaN/inf positions in {len(bad)} system(s) (first: {bad[:5].tolist()})")
    n = loc.shape[0] if limit is None else min(limit, loc.shape[0])
    N = loc.shape[2]
    ei = fully_connected(N)
    samples = []
    x_all = torch.from_numpy(np.ascontiguousarray(loc[:n, frame_offset:end].transpose(0, 2, 1, 3))).float()
    p = torch.from_numpy(param[:n]).float()
    for s in range(n):
        h, ea = nbody_features(kind, p[s], ei)
        samples.append(TrajectorySample(x_all[s], h, ei, ea))
    return TrajectoryDataset(samples, num_cond, name=f"nbody_{kind}", source=str(path))


# ------------------------------------------------------------------------------------------ MD17
def _bond_hops(z: np.ndarray, pos: np.ndarray, max_hops: int = 3, scale: float = 1.15) -> np.ndarray:
    """Shortest bond-path length between atoms (0 = same atom or farther than ``max_hops``), bonds from
    covalent radii (``d < scale (r_i + r_j)``)."""
    r = np.array([_COVALENT_RADII[int(a)] for a in z])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    adj = (d < scale * (r[:, None] + r[None])) & ~np.eye(len(z), dtype=bool)
    hops = np.zeros(adj.shape, dtype=np.int64)
    reach = np.eye(len(z), dtype=bool)
    frontier = np.eye(len(z), dtype=bool)
    for k in range(1, max_hops + 1):
        frontier = (frontier.astype(np.int64) @ adj.astype(np.int64) > 0) & ~reach
        hops[frontier] = k
        reach |= frontier
    return hops


def nbody_features(kind: str, values: torch.Tensor, edge_index: torch.Tensor):
    """Node and edge features ``(h [n, 1], edge_attr [E, 1])`` of an N-body system: charges or masses
    ``[n]`` (``h = q_i``, edges ``q_i q_j``), or the spring matrix ``[n, n]`` for springs (``h = 1``, edges
    the spring constant of the pair)."""
    i, j = edge_index
    if kind == "springs":
        return torch.ones(values.shape[0], 1), values[i, j].unsqueeze(-1)
    return values.unsqueeze(-1), (values[i] * values[j]).unsqueeze(-1)


def md17_features(z: np.ndarray, pos: np.ndarray, max_hops: int = 3):
    """``(h, edge_index, edge_attr)`` of a molecule for MD17 models: one-hot elements (H C N O) and edges
    between atoms within ``max_hops`` covalent bonds of ``pos`` (one-hot hop distance)."""
    unknown = sorted({int(a) for a in z} - set(MD17_ELEMENTS))
    if unknown:
        raise GeodiffError(f"atomic_numbers: MD17 models know H, C, N, O (1, 6, 7, 8), got {unknown}")
    hops = _bond_hops(z, pos, max_hops)
    src, dst = np.nonzero(hops)
    ei = torch.from_numpy(np.stack([src, dst])).long()
    ea = torch.nn.functional.one_hot(torch.from_numpy(hops[src, dst] - 1), max_hops).float()
    h = torch.nn.functional.one_hot(torch.tensor([MD17_ELEMENTS.index(int(a)) for a in z]), 4).float()
    return h, ei, ea


def make_system(info: dict, positions, **features) -> TrajectorySample:
    """One system for a model trained on the data ``info`` describes (an export's data record), from its
    positions ``[n, frames, dim]`` and the per-system quantities its features need, by data set:

    * ``nbody`` charged: ``charges=[n]``; gravity: ``masses=[n]``; springs: ``springs=[n, n]`` (constants);
    * ``md17``: ``atomic_numbers=[n]`` (bond hops from the first frame);
    * ``eth_ucy``: nothing (every pedestrian alike).
    """
    x = torch.as_tensor(np.asarray(positions, dtype=np.float32))
    if x.dim() != 3:
        raise GeodiffError(f"positions: need [nodes, frames, dim], got {list(x.shape)}")
    n = x.shape[0]
    dataset = info.get("dataset")
    if dataset == "eth_ucy":
        ei = fully_connected(n)
        return TrajectorySample(x, torch.ones(n, 1), ei, torch.ones(ei.shape[1], 1))
    if dataset == "md17":
        z = _feature(features, "atomic_numbers", (n,), dataset)
        h, ei, ea = md17_features(z.astype(np.int64), x[:, 0].numpy().astype(np.float64))
        return TrajectorySample(x, h, ei, ea)
    if dataset == "nbody":
        kind = info.get("kind") or "charged"
        name = {"charged": "charges", "gravity": "masses", "springs": "springs"}[kind]
        values = _feature(features, name, (n, n) if kind == "springs" else (n,), f"{dataset} {kind}")
        ei = fully_connected(n)
        h, ea = nbody_features(kind, torch.as_tensor(values, dtype=torch.float32), ei)
        return TrajectorySample(x, h, ei, ea)
    raise GeodiffError(f"checkpoint: unknown trajectory data set {dataset!r}")


def _feature(features: dict, name: str, shape: tuple, what: str) -> np.ndarray:
    extra = sorted(set(features) - {name})
    if name not in features or extra:
        raise GeodiffError(f"a {what} model needs {name}= with shape {list(shape)} per system"
                           + (f" (not {', '.join(extra)})" if extra else ""))  # fmt: skip
    v = np.asarray(features[name], dtype=np.float64)
    if v.shape != shape or not np.isfinite(v).all():
        raise GeodiffError(f"{name}: need finite values of shape {list(shape)}, got {list(v.shape)}")
    return v


def load_md17_npz(path: str | os.PathLike, split: str = "train", num_cond: int = 10, num_target: int = 20,
                  stride: int = 10, window_step: int | None = None, fractions=(0.6, 0.2, 0.2),
                  max_hops: int = 3, limit: int | None = None) -> TrajectoryDataset:  # fmt: skip
    """MD17 in the sGDML npz format (``R`` [frames, atoms, 3] in Angstrom, ``z`` atomic numbers; ``E``, ``F``
    not used): every ``stride``-th frame, windows of ``num_cond + num_target`` frames (start every
    ``window_step`` strided frames, default a whole window), split chronologically 60/20/20 so no test
    window overlaps the training frames; edges between atoms within ``max_hops`` covalent bonds."""
    z = read_npz(path)
    for k in ("R", "z"):
        if k not in z:
            raise GeodiffError(f"{path}: not an sGDML/MD17 npz (missing key {k!r}; have {sorted(z)})")
    R, Z = z["R"], z["z"].astype(np.int64).reshape(-1)
    if R.ndim != 3 or R.shape[1:] != (len(Z), 3):
        raise GeodiffError(f"{path}: R must be [frames, {len(Z)}, 3] to match z, got {list(R.shape)}")
    unknown = sorted({int(a) for a in Z} - set(MD17_ELEMENTS))
    if unknown:
        raise GeodiffError(f"{path}: elements {unknown} not supported for MD17 (H C N O)")
    if not np.isfinite(R).all():
        raise GeodiffError(f"{path}: R contains NaN/inf coordinates")
    if split not in ("train", "val", "test"):
        raise GeodiffError(f"split: expected train, val or test, got {split!r}")
    frames = R[::stride]
    win = num_cond + num_target
    step = window_step or win
    starts = np.arange(0, len(frames) - win + 1, step)
    if len(starts) < 3:
        raise GeodiffError(
            f"{path}: {len(R)} frames give {len(starts)} windows of {win} (stride {stride}); need 3"
        )
    a, b = int(round(fractions[0] * len(starts))), int(round((fractions[0] + fractions[1]) * len(starts)))
    # chronological: a window belongs to a split only if it lies wholly inside that split's frame range
    bounds = {"train": (0, a), "val": (a, b), "test": (b, len(starts))}[split]
    lo_frame = starts[bounds[0]] if bounds[0] < len(starts) else len(frames)
    hi_frame = starts[bounds[1]] if bounds[1] < len(starts) else len(frames)
    chosen = [s for s in starts[bounds[0] : bounds[1]] if s >= lo_frame and s + win <= hi_frame]
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        raise GeodiffError(f"{path}: no {split} windows (frames {len(R)}, stride {stride}, window {win})")
    h, ei, ea = md17_features(Z, R[0], max_hops)
    samples = [TrajectorySample(torch.from_numpy(frames[s : s + win].transpose(1, 0, 2)).float(), h, ei, ea)
               for s in chosen]  # fmt: skip
    return TrajectoryDataset(samples, num_cond, name=f"md17_{Path(path).stem}", source=str(path))


# ------------------------------------------------------------------------------------------ ETH-UCY
def read_eth_ucy_file(path: str | os.PathLike) -> np.ndarray:
    """Rows ``frame ped x y`` (whitespace-separated, metres) -> float array ``[rows, 4]``."""
    p = Path(path)
    if not p.is_file():
        raise GeodiffError(f"{p}: file not found")
    rows = []
    with open(p, errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise GeodiffError(f"{p}:{lineno}: expected 4 columns (frame ped x y), got {len(parts)}")
            try:
                vals = [float(v) for v in parts]
            except ValueError:
                raise GeodiffError(f"{p}:{lineno}: not numbers: {line.strip()[:60]!r}") from None
            if not all(np.isfinite(vals)):
                raise GeodiffError(f"{p}:{lineno}: NaN/inf value")
            rows.append(vals)
    if not rows:
        raise GeodiffError(f"{p}: no trajectory rows")
    return np.asarray(rows)


def _eth_ucy_windows(data: np.ndarray, obs: int, pred: int, skip: int, min_agents: int):
    """Social-GAN windowing: consecutive recorded frames; agents present in every frame of the window."""
    frames = np.unique(data[:, 0])
    by_frame = {f: data[data[:, 0] == f] for f in frames}
    win = obs + pred
    for start in range(0, len(frames) - win + 1, skip):
        chunk = np.concatenate([by_frame[f] for f in frames[start : start + win]])
        peds = np.unique(chunk[:, 1])
        keep = []
        for p in peds:
            rows = chunk[chunk[:, 1] == p]
            if len(rows) == win:
                keep.append(rows[np.argsort(rows[:, 0]), 2:4])
        if len(keep) >= min_agents:
            yield np.stack(keep)  # [agents, win, 2]


# EqMotion's ETH-UCY windows (MediaBrain-SJTU/EqMotion eth_ucy/process_eth_data_diverse.py, used by GeoTDM):
# agents per window by test scene (its ``total_num``) and the neighbour radius at the last observed frame (m)
EQMOTION_AGENTS = {"univ": 2, "zara1": 3}
EQMOTION_RADIUS = 5.0
WINDOWS = ("sgan", "eqmotion")


def eqmotion_windows(w: np.ndarray, scene: str, obs: int) -> list[np.ndarray]:
    """One window per focal agent of a Social-GAN window ``w`` ``[agents, frames, 2]``, as EqMotion cuts them
    (the focal agent first): with fewer agents than the scene's ``total_num`` (1; univ 2, zara1 3), the focal
    agent and all the others in their order; else the agents within 5 m of it at the last observed frame,
    nearest first, at most ``total_num``."""
    total = EQMOTION_AGENTS.get(scene, 1)
    n = w.shape[0]
    out = []
    for i in range(n):
        if n < total:
            idx = [i, *[k for k in range(n) if k != i]]
        else:
            d = np.linalg.norm(w[:, obs - 1] - w[i, obs - 1], axis=-1)
            order = np.argsort(d, kind="stable")
            order = np.concatenate([[i], order[order != i]])  # itself first (distance 0, ties aside)
            idx = order[: min(total, int((d < EQMOTION_RADIUS).sum()))]
        out.append(w[idx])
    return out


def load_eth_ucy(root: str | os.PathLike, scene: str, split: str = "train", obs: int = 8, pred: int = 12,
                 skip: int = 1, min_agents: int = 1, limit: int | None = None,
                 windows: str = "sgan") -> TrajectoryDataset:  # fmt: skip
    """ETH-UCY, leave-one-scene-out: ``root/<scene>/<split>/*.txt`` (``frame ped x y``, 0.4 s per frame).

    ``windows="sgan"`` (geodiff's default, Social-GAN's): each window of ``obs + pred`` consecutive frames is
    one system, every agent present in all its frames, with all the others as neighbours (fully connected).
    ``windows="eqmotion"`` (the windows GeoTDM's paper numbers come from): every such agent is the focal agent
    (node 0) of a window of its own with at most 1 (univ 2, zara1 3) of its nearest neighbours within 5 m
    (:func:`eqmotion_windows`); scored on the focal agents. Coordinates stay 2D (``dim`` = 2)."""
    if windows not in WINDOWS:
        raise GeodiffError(f"windows: expected sgan or eqmotion, got {windows!r}")
    if scene not in ETH_UCY_SCENES:
        raise GeodiffError(f"scene: unknown ETH-UCY scene {scene!r} (one of {', '.join(ETH_UCY_SCENES)})")
    folder = Path(root) / scene / split
    if not folder.is_dir():
        raise GeodiffError(f"{folder}: ETH-UCY folder not found (expected <root>/<scene>/<split>/*.txt)")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise GeodiffError(f"{folder}: no .txt trajectory files")
    samples = []
    for f in files:
        for whole in _eth_ucy_windows(read_eth_ucy_file(f), obs, pred, skip, min_agents):
            for w in [whole] if windows == "sgan" else eqmotion_windows(whole, scene, obs):
                n = w.shape[0]
                ei = fully_connected(n)
                samples.append(TrajectorySample(torch.from_numpy(w).float(), torch.ones(n, 1), ei,
                                                torch.ones(ei.shape[1], 1)))  # fmt: skip
            if limit is not None and len(samples) >= limit:
                samples = samples[:limit]
                break
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise GeodiffError(f"{folder}: no window of {obs + pred} frames with an agent present throughout")
    what = str(folder) if windows == "sgan" else f"{folder} (EqMotion windows: focal agent first)"
    return TrajectoryDataset(samples, obs, name=f"eth_ucy_{scene}", source=what)


def generate_nbody_split(folder: str | os.PathLike, kind: str = "charged", num_train: int = 3000,
                         num_val: int = 500, num_test: int = 500, seed: int = 0,
                         num_particles: int | None = None,
                         progress: bool = True) -> Path:  # fmt: skip
    """Simulate train/val/test N-body files into ``folder`` (independent seeds ``seed``, +1, +2)."""
    counts = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "seed": seed}
    for key, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise GeodiffError(f"{key}: must be an integer, got {v!r}")
    if kind not in DEFAULTS:
        raise GeodiffError(f"kind: unknown N-body system {kind!r} (charged, springs or gravity)")
    cfg = (
        DEFAULTS[kind] if num_particles is None else replace(DEFAULTS[kind], num_particles=int(num_particles))
    )
    folder = Path(folder)
    for k, (split, n) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        if n <= 0:
            raise GeodiffError(f"num_{split}: need at least one simulation, got {n}")
        sim = simulate(int(n), cfg, seed=seed + k, progress=progress)
        save_nbody_npz(
            sim, folder / f"{split}.npz", kind, seed=seed + k, dt=cfg.dt, sample_freq=cfg.sample_freq
        )
        if progress:
            print(f"wrote {folder / f'{split}.npz'} ({n} {kind} systems, {sim['loc'].shape[1]} frames)")
    return folder
