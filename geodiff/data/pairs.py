"""Registration pairs, seeded (RPMNet protocol).

Pairs (:func:`make_pair`, :func:`benchmark_pairs`) follow Yew & Lee's RPMNet protocol, with lengths in units
of the object's radius (half its diameter) so meshes in mm and unit-sphere shapes behave alike:

1. source and target are sampled independently from the object (area-weighted surface samples of a mesh,
   random subsets of a point cloud), so no point has an exact partner;
2. partial views: each cloud is cropped by its own random half-space, keeping ``round(keep * num_points)``
   points (those farthest along a random direction);
3. the target is moved by a random pose: Euler angles uniform in ``[-max_angle, max_angle]`` per axis,
   translation uniform in ``[-max_translation, max_translation]`` radii per axis;
4. noisy: every coordinate of both clouds gets Gaussian jitter ``N(0, noise r)`` clipped at ``clip r``.

The pose maps the source to the target: ``target ~= R source + t``. ``model`` holds clean object points in
the source frame for ADD / ADD-S.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodiff.data.pointclouds import (
    PointCloud,
    cloud_diameter,
    existing_path,
    load_modelnet40_h5,
    load_tudl_models,
)
from geodiff.data.shapes import euler_rotation, procedural_mesh, sample_object
from geodiff.errors import GeodiffError, GeodiffValueError, first_line
from geodiff.io import check_npz_size

__all__ = ["RegistrationPair", "PairConfig", "make_pair", "benchmark_pairs", "make_benchmark_pairs",
           "save_pairs", "load_pairs"]  # fmt: skip


@dataclass
class RegistrationPair:
    """One registration problem: ``target ~= pose[:3, :3] @ source + pose[:3, 3]``; ``model`` = clean object
    points in the source frame (for ADD / ADD-S); ``diameter`` in the data's ``unit``."""

    source: np.ndarray
    target: np.ndarray
    pose: np.ndarray
    model: np.ndarray
    diameter: float
    unit: str = "unitless"
    name: str = ""


@dataclass
class PairConfig:
    """How a pair is made (lengths in object radii; see the module docstring)."""

    num_points: int = 1024  # points sampled per cloud before cropping
    max_angle: float = 45.0  # degrees, per Euler axis
    max_translation: float = 0.5  # radii, per axis
    noise: float = 0.0  # jitter standard deviation, radii
    clip: float = 0.05  # jitter clipped at this, radii
    keep: float = 1.0  # fraction of each cloud kept by its half-space crop (1: full clouds)
    num_model_points: int = 1024  # clean model points for ADD / ADD-S

    def __post_init__(self):
        if int(self.num_points) < 3:
            raise GeodiffValueError(f"num_points: need at least 3 points per cloud, got {self.num_points}")
        if not 0 < float(self.keep) <= 1:
            raise GeodiffValueError(f"keep: the kept fraction must be in (0, 1], got {self.keep}")
        if round(self.keep * self.num_points) < 3:
            raise GeodiffValueError(f"keep: {self.keep} x {self.num_points} points leaves fewer than 3")
        if not 0 <= float(self.max_angle) <= 180:
            raise GeodiffValueError(f"max_angle: must be in [0, 180] degrees, got {self.max_angle}")
        for k in ("max_translation", "noise", "clip"):
            if float(getattr(self, k)) < 0:
                raise GeodiffValueError(f"{k}: must be >= 0, got {getattr(self, k)}")
        if int(self.num_model_points) < 1:
            raise GeodiffValueError(f"num_model_points: must be >= 1, got {self.num_model_points}")


# ------------------------------------------------------------------------------------------------ pairs


def _crop(points: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """Keep the ``round(keep N)`` points farthest along a random direction (a random half-space)."""
    if keep >= 1:
        return points
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    proj = (points - points.mean(0)) @ d
    k = max(3, int(round(keep * len(points))))
    return points[np.sort(np.argsort(-proj, kind="stable")[:k])]


def make_pair(obj: PointCloud, cfg: PairConfig, rng: np.random.Generator, diameter: float | None = None,
              unit: str = "unitless", name: str = "") -> RegistrationPair:  # fmt: skip
    """One seeded pair from a mesh or a point cloud (see the module docstring for the protocol)."""
    diam = float(diameter) if diameter else cloud_diameter(obj.points)
    if not np.isfinite(diam) or diam <= 0:
        raise GeodiffValueError(f"{name or obj.name or 'object'}: zero or invalid diameter {diam}")
    r = 0.5 * diam
    n = int(cfg.num_points)
    src = _crop(sample_object(obj, n, rng), cfg.keep, rng)
    tgt = _crop(sample_object(obj, n, rng), cfg.keep, rng)
    rot = euler_rotation(np.deg2rad(rng.uniform(-cfg.max_angle, cfg.max_angle, size=3)))
    trans = rng.uniform(-cfg.max_translation, cfg.max_translation, size=3) * r
    tgt = tgt @ rot.T + trans
    src, tgt = src[rng.permutation(len(src))], tgt[rng.permutation(len(tgt))]
    model = sample_object(obj, int(cfg.num_model_points), rng)
    if cfg.noise > 0:  # drawn last: a noisy pair is its clean twin (same seed) plus the jitter
        src = src + np.clip(rng.normal(scale=cfg.noise * r, size=src.shape), -cfg.clip * r, cfg.clip * r)
        tgt = tgt + np.clip(rng.normal(scale=cfg.noise * r, size=tgt.shape), -cfg.clip * r, cfg.clip * r)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, trans
    return RegistrationPair(src, tgt, pose, model, diam, unit, name or obj.name)


def benchmark_pairs(objects: Sequence[dict], cfg: PairConfig, num_pairs: int, seed: int = 0,
                    progress: bool = False) -> list[RegistrationPair]:  # fmt: skip
    """``num_pairs`` pairs cycling through ``objects`` (dicts with ``mesh`` and optional ``diameter``,
    ``unit``, ``name``); pair ``i`` depends only on ``(seed, i)``."""
    from tqdm import tqdm

    if not objects:
        raise GeodiffValueError("registration pairs: no objects to make pairs from")
    if int(num_pairs) <= 0:
        raise GeodiffValueError(f"num_pairs: must be a positive integer, got {num_pairs}")
    out = []
    for i in tqdm(range(int(num_pairs)), desc="pairs", unit="pair", disable=not progress, file=sys.stderr):
        o = objects[i % len(objects)]
        mesh = o["mesh"]
        out.append(make_pair(mesh, cfg, np.random.default_rng([int(seed), i]), o.get("diameter"),
                             o.get("unit", "unitless"),
                             o.get("name") or mesh.name or f"object_{i}"))  # fmt: skip
    return out


_PAIR_ARRAYS = ("source", "target", "model")


def make_benchmark_pairs(kind: str, where: str | os.PathLike | None, config: PairConfig, num_pairs: int,
                         seed: int = 0, modelnet_split: str = "test"
                         ) -> tuple[list[RegistrationPair], dict]:  # fmt: skip
    """A seeded benchmark set and its description (for :func:`save_pairs`): ``kind`` ``tudl`` (a BOP models
    folder ``where``, mm), ``modelnet`` (a ModelNet40 HDF5 folder, the first ``num_pairs`` clouds of the
    split) or ``procedural`` (shapes of unit radius)."""
    if kind == "modelnet":
        mn = load_modelnet40_h5(Path(where), modelnet_split)
        pts = mn["points"][:num_pairs]
        nrm = mn["normals"][:num_pairs] if mn["normals"] is not None else [None] * len(pts)
        objects = [{"mesh": PointCloud(p, n, None, f"modelnet_{i}"), "unit": "unitless"}
                   for i, (p, n) in enumerate(zip(pts, nrm, strict=True))]  # fmt: skip
        source = f"modelnet40:{modelnet_split}"
    elif kind == "procedural":
        rng = np.random.default_rng([int(seed), 999])
        objects = [{"mesh": procedural_mesh(rng), "diameter": 2.0, "unit": "unitless",
                    "name": f"procedural_{i}"} for i in range(num_pairs)]  # fmt: skip
        source = "procedural"
    elif kind == "tudl":
        objects = [dict(o, unit="mm") for o in load_tudl_models(Path(where))]
        source = f"tudl:{where}"
    else:
        raise GeodiffError(f"pairs: unknown source {kind!r} (tudl, modelnet or procedural)")
    pairs = benchmark_pairs(objects, config, num_pairs, seed, progress=True)
    keys = ("num_points", "max_angle", "max_translation", "noise", "clip", "keep")
    return pairs, {"source": source, **{k: getattr(config, k) for k in keys}, "seed": int(seed)}


def save_pairs(path: str | os.PathLike, pairs: Sequence[RegistrationPair], **meta) -> Path:
    """Pairs (clouds of any sizes) and ``meta`` (JSON-able) into one ``.npz``, atomically."""
    from geodiff.io import atomic_path

    if not pairs:
        raise GeodiffValueError("registration pairs: nothing to save")
    arrays = {}
    for k in _PAIR_ARRAYS:
        parts = [np.asarray(getattr(p, k), dtype=np.float64) for p in pairs]
        arrays[k] = np.concatenate(parts)
        arrays[f"{k}_counts"] = np.array([len(x) for x in parts], dtype=np.int64)
    arrays["pose"] = np.stack([p.pose for p in pairs]).astype(np.float64)
    arrays["diameter"] = np.array([p.diameter for p in pairs], dtype=np.float64)
    arrays["unit"] = np.array([p.unit for p in pairs])
    arrays["name"] = np.array([p.name for p in pairs])
    arrays["meta"] = np.array(json.dumps({"format": "geodiff-registration-pairs", **meta}))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_pairs(path: str | os.PathLike) -> tuple[list[RegistrationPair], dict]:
    """The pairs and metadata written by :func:`save_pairs` (``geodiff data registration``)."""
    import zipfile

    p = existing_path(path)
    if not zipfile.is_zipfile(p):
        raise GeodiffError(f"{p}: not an npz file (expected the pairs `geodiff data registration` writes)")
    check_npz_size(p)
    try:  # every array read now, pickles refused: a damaged member fails here, in one line
        with np.load(p, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile / numpy raise many kinds on damaged files
        raise GeodiffError(
            f"{p}: not a readable npz file ({type(exc).__name__}: {first_line(exc, '')})"
        ) from None
    keys = set(z)
    need = {*_PAIR_ARRAYS, *(f"{k}_counts" for k in _PAIR_ARRAYS), "pose", "diameter", "unit", "meta"}
    if not need <= keys:
        raise GeodiffError(f"{p}: not a registration pairs file (missing {', '.join(sorted(need - keys))})")
    try:
        meta = json.loads(str(z["meta"]))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise GeodiffError(f"{p}: meta is not a JSON object ({first_line(exc, '')})") from None
    meta.pop("format", None)
    poses = z["pose"]
    numeric = lambda a: np.issubdtype(a.dtype, np.number) and np.isfinite(a).all()  # noqa: E731
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not numeric(poses):
        raise GeodiffError(f"{p}: pose must be finite [pairs, 4, 4] transforms, got {list(poses.shape)}")
    n = len(poses)
    split = {}
    for k in _PAIR_ARRAYS:
        counts, points = z[f"{k}_counts"], z[k]
        if (counts.shape != (n,) or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any()
                or int(counts.sum()) != len(points)):  # fmt: skip
            raise GeodiffError(
                f"{p}: {k}_counts must be {n} whole numbers adding up to the {len(points)} points"
            )
        if points.ndim != 2 or points.shape[1] != 3 or not numeric(points):
            raise GeodiffError(f"{p}: {k} must be finite [points, 3] coordinates")
        split[k] = np.split(points, np.cumsum(counts)[:-1])
    diameter = (
        np.asarray(z["diameter"], dtype=float) if np.issubdtype(z["diameter"].dtype, np.number) else None
    )
    if diameter is None or diameter.shape != (n,) or not np.isfinite(diameter).all() or (diameter <= 0).any():
        raise GeodiffError(f"{p}: diameter must be {n} positive numbers")
    names = z["name"] if "name" in keys and len(z["name"]) == n else [""] * n
    units = z["unit"] if len(z["unit"]) == n else None
    if units is None:
        raise GeodiffError(f"{p}: unit must hold {n} entries")
    pairs = [RegistrationPair(split["source"][i], split["target"][i], poses[i], split["model"][i],
                              float(diameter[i]), str(units[i]), str(names[i]))
             for i in range(n)]  # fmt: skip
    return pairs, meta
