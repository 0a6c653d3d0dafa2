"""Point clouds and meshes for registration: file readers and writers, surface sampling, ModelNet40 HDF5,
BOP / TUD-L model folders, procedural shapes, and seeded registration pairs (RPMNet protocol).

Files: PLY (ascii, binary little / big endian; any vertex properties, polygon faces triangulated as fans),
OFF (also ModelNet's glued ``OFF490 518 0`` first line), XYZ / TXT (3 columns, or 6 with normals) and NPY
(``[N, 3]`` or ``[N, 6]``). Every reader returns a :class:`PointCloud` (float64 points, optional normals
and triangles) and raises a one-line :class:`~geodiff.errors.GeodiffError` on a malformed file.

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
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodiff.errors import GeodiffError, GeodiffValueError

__all__ = [
    "PointCloud",
    "RegistrationPair",
    "PairConfig",
    "read_ply",
    "write_ply",
    "read_off",
    "read_xyz",
    "read_npy",
    "load_point_cloud",
    "check_cloud",
    "sample_surface",
    "load_modelnet40_h5",
    "load_tudl_models",
    "procedural_mesh",
    "euler_rotation",
    "cloud_diameter",
    "make_pair",
    "benchmark_pairs",
    "save_pairs",
    "make_benchmark_pairs",
    "load_pairs",
]


@dataclass
class PointCloud:
    """Points ``[N, 3]`` (float64), optional per-point normals ``[N, 3]`` and triangles ``[F, 3]`` (int)."""

    points: np.ndarray
    normals: np.ndarray | None = None
    faces: np.ndarray | None = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.points)


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

    num_points: int = 1024
    max_angle: float = 45.0
    max_translation: float = 0.5
    noise: float = 0.0
    clip: float = 0.05
    keep: float = 1.0
    num_model_points: int = 1024

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


# ------------------------------------------------------------------------------------------------ PLY
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


def _ply_header(path: Path, data: bytes) -> tuple[str | None, list[dict], int]:
    """Format byte order (None = ascii), elements ``{name, count, props: [(name, dtype, list_count_dtype)]}``
    and the offset of the body."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise GeodiffError(f"{path}: bad PLY header (no 'ply' magic / 'end_header')")
    body = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    fmt, elements = "missing", []
    for raw in data[:end].decode("latin-1").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) != 3 or tok[1] not in _PLY_FORMATS or tok[2] not in ("1.0", "1"):
                raise GeodiffError(f"{path}: bad PLY header (format {' '.join(tok[1:])!r})")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise GeodiffError(f"{path}: bad PLY header (line {raw.strip()!r})")
            elements.append({"name": tok[1], "count": int(tok[2]), "props": []})
        elif tok[0] == "property":
            if not elements:
                raise GeodiffError(f"{path}: bad PLY header (property before any element)")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _PLY_TYPES or tok[3] not in _PLY_TYPES:
                    raise GeodiffError(f"{path}: bad PLY header (list types {tok[2]!r} {tok[3]!r})")
                elements[-1]["props"].append((tok[4], _PLY_TYPES[tok[3]], _PLY_TYPES[tok[2]]))
            elif len(tok) == 3 and tok[1] in _PLY_TYPES:
                elements[-1]["props"].append((tok[2], _PLY_TYPES[tok[1]], None))
            else:
                raise GeodiffError(f"{path}: bad PLY header (property {' '.join(tok[1:])!r})")
        else:
            raise GeodiffError(f"{path}: bad PLY header (unknown line {raw.strip()!r})")
    if fmt == "missing":
        raise GeodiffError(f"{path}: bad PLY header (no format line)")
    return _PLY_FORMATS[fmt], elements, body


def _ply_ascii(path: Path, text: str, elements: list[dict]) -> dict[str, dict[str, object]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    out, pos = {}, 0
    for el in elements:
        n, props = el["count"], el["props"]
        rows = lines[pos : pos + n]
        if len(rows) < n:
            raise GeodiffError(f"{path}: truncated PLY ({el['name']}: {len(rows)} of {n} lines)")
        pos += n
        try:
            if all(p[2] is None for p in props):  # scalar properties only: one dense parse
                arr = np.array(" ".join(rows).split(), dtype=np.float64).reshape(n, len(props))
                out[el["name"]] = {p[0]: arr[:, i] for i, p in enumerate(props)}
            else:
                out[el["name"]] = _ply_ascii_lists(rows, props)
        except ValueError as exc:
            raise GeodiffError(f"{path}: malformed PLY {el['name']} data ({exc})") from None
    return out


def _ply_ascii_lists(rows: list[str], props: list) -> dict[str, object]:
    toks = [r.split() for r in rows]
    widths = {len(t) for t in toks}
    cols: dict[str, object] = {}
    if len(widths) == 1 and props[0][2] is not None and len(props) == 1:  # e.g. all triangles: dense
        arr = np.array(toks, dtype=np.float64)
        if len(arr) and not (arr[:, 0] == arr.shape[1] - 1).all():
            raise ValueError("list length does not match the row")
        cols[props[0][0]] = arr[:, 1:].astype(np.int64) if len(arr) else np.zeros((0, 3), np.int64)
        return cols
    for p in props:
        cols[p[0]] = []
    for t in toks:
        k = 0
        for name, _, list_t in props:
            if list_t is None:
                cols[name].append(float(t[k]))
                k += 1
            else:
                m = int(t[k])
                cols[name].append([int(float(v)) for v in t[k + 1 : k + 1 + m]])
                if len(cols[name][-1]) != m:
                    raise ValueError("list shorter than its count")
                k += 1 + m
    return cols


def _ply_binary(path: Path, buf: bytes, order: str, elements: list[dict]) -> dict[str, dict[str, object]]:
    out, off = {}, 0
    for el in elements:
        n, props = el["count"], el["props"]
        try:
            if all(p[2] is None for p in props):
                dt = np.dtype([(p[0], order + p[1]) for p in props])
                arr = np.frombuffer(buf, dtype=dt, count=n, offset=off)
                off += n * dt.itemsize
                out[el["name"]] = {p[0]: arr[p[0]] for p in props}
            else:
                out[el["name"]], off = _ply_binary_lists(buf, off, order, n, props)
        except (ValueError, IndexError) as exc:
            raise GeodiffError(f"{path}: truncated or malformed binary PLY ({el['name']}: {exc})") from None
    return out


def _ply_binary_lists(buf: bytes, off: int, order: str, n: int, props: list) -> tuple[dict, int]:
    if n == 0:  # an empty element (e.g. "element face 0"): nothing to read, not even a first count
        return {p[0]: [] for p in props}, off
    # fast path: every list has the length of the first one (triangle meshes) -> one structured read
    dt_first, k = [], None
    probe = off
    for name, t, list_t in props:
        if list_t is None:
            dt_first.append((name, order + t))
            probe += np.dtype(t).itemsize
        else:
            k = int(np.frombuffer(buf, dtype=order + list_t, count=1, offset=probe)[0])
            dt_first += [(f"{name}__n", order + list_t), (name, order + t, (k,))]
            break
    if len([p for p in props if p[2] is not None]) == 1 and props[-1][2] is not None and k is not None:
        dt = np.dtype(dt_first)
        if off + n * dt.itemsize <= len(buf):
            arr = np.frombuffer(buf, dtype=dt, count=n, offset=off)
            lname = props[-1][0]
            if (arr[f"{lname}__n"] == k).all():
                cols = {p[0]: arr[p[0]] for p in props[:-1]}
                cols[lname] = arr[lname].astype(np.int64).reshape(n, k)
                return cols, off + n * dt.itemsize
    cols: dict[str, list] = {p[0]: [] for p in props}
    for _ in range(n):
        for name, t, list_t in props:
            if list_t is None:
                cols[name].append(float(np.frombuffer(buf, dtype=order + t, count=1, offset=off)[0]))
                off += np.dtype(t).itemsize
            else:
                m = int(np.frombuffer(buf, dtype=order + list_t, count=1, offset=off)[0])
                off += np.dtype(list_t).itemsize
                cols[name].append(np.frombuffer(buf, dtype=order + t, count=m, offset=off).astype(np.int64))
                off += m * np.dtype(t).itemsize
    return cols, off


def _triangulate(polys, path: Path, num_vertices: int) -> np.ndarray | None:
    """Fan-triangulate polygons (a dense ``[F, k]`` array or a list of index lists) into ``[T, 3]``."""
    if polys is None:
        return None
    if isinstance(polys, np.ndarray) and polys.ndim == 2:
        k = polys.shape[1]
        if k < 3:
            raise GeodiffError(f"{path}: faces with {k} vertices")
        tri = (
            np.concatenate([polys[:, [0, i, i + 1]] for i in range(1, k - 1)]) if len(polys) else polys[:, :3]
        )
    else:
        rows = []
        for f in polys:
            f = np.asarray(f, dtype=np.int64)
            if len(f) < 3:
                raise GeodiffError(f"{path}: a face with {len(f)} vertices")
            rows += [[f[0], f[i], f[i + 1]] for i in range(1, len(f) - 1)]
        tri = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    tri = tri.astype(np.int64)
    if len(tri) and (tri.min() < 0 or tri.max() >= num_vertices):
        raise GeodiffError(f"{path}: face indices outside 0..{num_vertices - 1}")
    return tri


def read_ply(path: str | os.PathLike) -> PointCloud:
    """Vertices (x, y, z), normals (nx, ny, nz) when present and faces (triangulated) of a PLY file."""
    path = _existing(path)
    data = path.read_bytes()
    order, elements, body = _ply_header(path, data)
    if order is None:
        cols = _ply_ascii(path, data[body:].decode("latin-1"), elements)
    else:
        cols = _ply_binary(path, data[body:], order, elements)
    vert = cols.get("vertex")
    if vert is None or not all(k in vert for k in "xyz"):
        raise GeodiffError(f"{path}: PLY without vertex x, y, z properties")
    pts = np.stack([np.asarray(vert[k], dtype=np.float64) for k in "xyz"], axis=1)
    normals = None
    if all(k in vert for k in ("nx", "ny", "nz")):
        normals = np.stack([np.asarray(vert[k], dtype=np.float64) for k in ("nx", "ny", "nz")], axis=1)
    faces = None
    if "face" in cols and cols["face"]:
        key = "vertex_indices" if "vertex_indices" in cols["face"] else "vertex_index"
        if key in cols["face"]:
            faces = _triangulate(cols["face"][key], path, len(pts))
    return PointCloud(pts, normals, faces, path.stem)


def write_ply(path: str | os.PathLike, points, normals=None, faces=None) -> Path:
    """Write a binary little-endian PLY (double coordinates, optional normals and triangles), atomically."""
    from geodiff.io import atomic_path

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    props = ["x", "y", "z"]
    cols = [pts]
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
        if len(nrm) != len(pts):
            raise GeodiffValueError(f"normals: {len(nrm)} normals for {len(pts)} points")
        props += ["nx", "ny", "nz"]
        cols.append(nrm)
    head = ["ply", "format binary_little_endian 1.0", "comment geodiff", f"element vertex {len(pts)}"]
    head += [f"property double {p}" for p in props]
    tri = None
    if faces is not None:
        tri = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        head += [f"element face {len(tri)}", "property list uchar int vertex_indices"]
    head.append("end_header")
    blob = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype="<f8").tobytes()
    if tri is not None:
        rec = np.zeros(len(tri), dtype=np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
        rec["n"], rec["v"] = 3, tri
        blob += rec.tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(("\n".join(head) + "\n").encode("ascii") + blob)
    return Path(path)


# ---------------------------------------------------------------------------------------- OFF / XYZ / NPY
def read_off(path: str | os.PathLike) -> PointCloud:
    """An OFF mesh (``OFF`` then ``nv nf ne``; ModelNet's files glue the counts to ``OFF``)."""
    path = _existing(path)
    lines = [ln.split("#")[0].strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].startswith("OFF"):
        raise GeodiffError(f"{path}: bad OFF header (first line must start with 'OFF')")
    rest = lines[0][3:].split()
    i = 1
    if not rest:
        rest, i = (lines[1].split() if len(lines) > 1 else []), 2
    try:
        nv, nf = int(rest[0]), int(rest[1])
        verts = np.array(" ".join(lines[i : i + nv]).split(), dtype=np.float64).reshape(nv, 3)
        polys = [
            [int(v) for v in ln.split()[1 : 1 + int(ln.split()[0])]] for ln in lines[i + nv : i + nv + nf]
        ]
    except (ValueError, IndexError) as exc:
        raise GeodiffError(f"{path}: malformed OFF ({exc})") from None
    if len(polys) != nf:
        raise GeodiffError(f"{path}: truncated OFF ({len(polys)} of {nf} faces)")
    return PointCloud(verts, None, _triangulate(polys, path, nv) if nf else None, path.stem)


def read_xyz(path: str | os.PathLike) -> PointCloud:
    """Whitespace- or comma-separated text, 3 columns (x y z) or 6 (with normals); ``#`` comments."""
    path = _existing(path)
    try:
        text = path.read_text(errors="replace").replace(",", " ")
        rows = [ln.split("#")[0].split() for ln in text.splitlines()]
        rows = [r for r in rows if r]
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            raise ValueError(f"rows have {sorted(widths)} columns")
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), -1) if rows else np.zeros((0, 3))
    except ValueError as exc:
        raise GeodiffError(f"{path}: malformed point file ({exc})") from None
    return _from_columns(path, arr)


def read_npy(path: str | os.PathLike) -> PointCloud:
    """A NumPy ``.npy`` array ``[N, 3]`` or ``[N, 6]`` (points, normals)."""
    path = _existing(path)
    try:
        arr = np.load(path, allow_pickle=False)
        if not isinstance(arr, np.ndarray):  # an .npz renamed .npy
            raise ValueError("an npz archive, not a single array")
        arr = np.asarray(arr, dtype=np.float64)
    except Exception as exc:
        raise GeodiffError(f"{path}: unreadable .npy ({type(exc).__name__}: {exc})") from None
    return _from_columns(path, arr)


def _from_columns(path: Path, arr: np.ndarray) -> PointCloud:
    if arr.ndim != 2 or arr.shape[1] not in (3, 6):
        raise GeodiffError(f"{path}: expected 3 columns (x y z) or 6 (with normals), got shape {arr.shape}")
    return PointCloud(arr[:, :3].copy(), arr[:, 3:].copy() if arr.shape[1] == 6 else None, None, path.stem)


_READERS = {".ply": read_ply, ".off": read_off, ".xyz": read_xyz, ".txt": read_xyz, ".pts": read_xyz,
            ".csv": read_xyz, ".npy": read_npy}  # fmt: skip


def load_point_cloud(path: str | os.PathLike) -> PointCloud:
    """Any supported file, chosen by extension (PLY, OFF, XYZ/TXT/PTS/CSV, NPY)."""
    p = Path(path)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise GeodiffError(f"{p}: unknown point-cloud format {p.suffix!r} (use {', '.join(_READERS)})")
    return reader(p)


def _existing(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise GeodiffError(f"{p}: no such file")
    return p


def check_cloud(name: str, points) -> np.ndarray:
    """``points`` as a float64 ``[N, 3]`` array, or a one-line error for clouds no registration can use:
    wrong shape, empty, NaN/inf, fewer than 3 points, all points identical, all on one line."""
    try:
        p = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeodiffValueError(f"{name}: not an array of points ({exc})") from None
    if p.ndim != 2 or p.shape[-1] != 3:
        raise GeodiffValueError(f"{name}: expected points [N, 3], got shape {list(p.shape)}")
    if len(p) == 0:
        raise GeodiffValueError(f"{name}: empty cloud (no points)")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        raise GeodiffValueError(f"{name}: {int(bad.sum())} points with NaN or inf coordinates")
    if len(p) < 3:
        raise GeodiffValueError(f"{name}: at least 3 points are needed, got {len(p)}")
    c = p - p.mean(axis=0)
    scale = np.abs(p).max()
    sv = np.linalg.svd(c, compute_uv=False)
    if sv[0] <= 1e-12 * max(scale, 1e-300) * np.sqrt(len(p)):
        raise GeodiffValueError(f"{name}: all {len(p)} points are identical (a degenerate cloud)")
    if sv[1] <= 1e-9 * sv[0]:
        raise GeodiffValueError(f"{name}: all points lie on one line (the rotation about it is undefined)")
    return p


# ------------------------------------------------------------------------------------------------ sampling
def _face_geometry(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = vertices[faces]
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    return area2, cross / np.maximum(area2, 1e-300)[:, None]


def sample_surface(vertices, faces, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly on a triangle mesh's surface (faces drawn by area, barycentric coordinates
    ``(1 - sqrt(u), sqrt(u) (1 - w), sqrt(u) w)``) and their face normals."""
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise GeodiffValueError(f"faces: expected triangles [F, 3], got shape {list(faces.shape)}")
    area2, normal = _face_geometry(vertices, faces)
    total = area2.sum()
    if not np.isfinite(total) or total <= 0:
        raise GeodiffValueError("mesh: zero surface area (degenerate triangles)")
    f = rng.choice(len(faces), size=int(n), p=area2 / total)
    su, w = np.sqrt(rng.random(int(n))), rng.random(int(n))
    a, b, c = (vertices[faces[f, k]] for k in range(3))
    pts = (1 - su)[:, None] * a + (su * (1 - w))[:, None] * b + (su * w)[:, None] * c
    return pts, normal[f]


def _sample_object(obj: PointCloud, n: int, rng: np.random.Generator) -> np.ndarray:
    if obj.faces is not None and len(obj.faces):
        return sample_surface(obj.points, obj.faces, n, rng)[0]
    m = len(obj.points)
    return obj.points[rng.choice(m, size=n, replace=n > m)].astype(np.float64)


def cloud_diameter(points, max_points: int = 4000) -> float:
    """Largest distance between two points (exact up to ``max_points`` points, else on a fixed subset)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) > max_points:
        p = p[np.random.default_rng(0).choice(len(p), max_points, replace=False)]
    best = 0.0
    for i in range(0, len(p), 1024):
        d = ((p[i : i + 1024, None, :] - p[None, :, :]) ** 2).sum(-1)
        best = max(best, float(d.max()))
    return float(np.sqrt(best))


# ------------------------------------------------------------------------------------------------ data sets
def load_modelnet40_h5(folder: str | os.PathLike, split: str = "test") -> dict[str, np.ndarray | None]:
    """ModelNet40 in the PointNet HDF5 layout: every ``ply_data_{split}*.h5`` in ``folder`` (or one .h5
    file), concatenated: ``points`` ``[N, P, 3]``, ``normals`` ``[N, P, 3]`` (None when absent) and
    ``labels``."""
    import h5py

    p = Path(folder)
    if not p.exists():
        raise GeodiffError(f"{p}: no such file or folder")
    files = [p] if p.is_file() else sorted(p.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise GeodiffError(f"{p}: no ply_data_{split}*.h5 files (ModelNet40 HDF5 layout)")
    pts, nrm, lab = [], [], []
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                pts.append(np.asarray(h["data"], dtype=np.float64))
                nrm.append(np.asarray(h["normal"], dtype=np.float64) if "normal" in h else None)
                lab.append(
                    np.asarray(h["label"]).reshape(-1) if "label" in h else np.zeros(len(pts[-1]), int)
                )
        except (OSError, KeyError) as exc:
            raise GeodiffError(f"{f}: not a ModelNet40 HDF5 file ({type(exc).__name__}: {exc})") from None
        if pts[-1].ndim != 3 or pts[-1].shape[-1] != 3:
            raise GeodiffError(f"{f}: 'data' must be [N, P, 3], got {list(pts[-1].shape)}")
    normals = None if any(n is None for n in nrm) else np.concatenate(nrm)
    return {"points": np.concatenate(pts), "normals": normals, "labels": np.concatenate(lab).astype(np.int64)}


def load_tudl_models(models_dir: str | os.PathLike) -> list[dict]:
    """A BOP ``models`` folder (``obj_XXXXXX.ply`` meshes + ``models_info.json``): one dict per object with
    ``mesh`` (:class:`PointCloud` with triangles), ``diameter`` (from models_info, else measured) and
    ``name`` (``obj_000001``). Units are the folder's (mm for BOP)."""
    d = Path(models_dir)
    if not d.is_dir():
        raise GeodiffError(f"{d}: no such folder (a BOP models folder with obj_*.ply)")
    files = sorted(d.glob("obj_*.ply"))
    if not files:
        raise GeodiffError(f"{d}: no obj_*.ply meshes")
    info = {}
    if (d / "models_info.json").is_file():
        try:
            info = json.loads((d / "models_info.json").read_text())
        except json.JSONDecodeError as exc:
            raise GeodiffError(f"{d / 'models_info.json'}: invalid JSON ({exc})") from None
    out = []
    for f in files:
        mesh = read_ply(f)
        if mesh.faces is None or not len(mesh.faces):
            raise GeodiffError(f"{f}: a BOP model needs triangles")
        m = re.search(r"(\d+)$", f.stem)
        key = str(int(m.group(1))) if m else f.stem
        diam = info.get(key, {}).get("diameter") or cloud_diameter(mesh.points)
        out.append({"mesh": mesh, "diameter": float(diam), "name": f.stem})
    return out


def _box() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return v, np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int64)


def _ellipsoid(rings: int = 10, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    th = np.linspace(0, np.pi, rings + 1)[1:-1]
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.outer(np.sin(th), np.cos(ph)), np.outer(np.sin(th), np.sin(ph)),
                     np.repeat(np.cos(th)[:, None], segments, 1)], -1).reshape(-1, 3)  # fmt: skip
    v = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    faces, south = [], len(v) - 1
    for j in range(segments):
        k = (j + 1) % segments
        faces.append((0, 1 + j, 1 + k))
        base = 1 + (rings - 2) * segments
        faces.append((south, base + k, base + j))
        for i in range(rings - 2):
            a, b = 1 + i * segments, 1 + (i + 1) * segments
            faces += [(a + j, b + j, b + k), (a + j, b + k, a + k)]
    return v, np.array(faces, dtype=np.int64)


def _cylinder(segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    circle = np.c_[np.cos(ph), np.sin(ph)]
    v = np.concatenate([np.c_[circle, -np.ones(segments)], np.c_[circle, np.ones(segments)],
                        [[0, 0, -1.0], [0, 0, 1.0]]])  # fmt: skip
    lo, hi = 2 * segments, 2 * segments + 1
    faces = []
    for j in range(segments):
        k = (j + 1) % segments
        faces += [
            (j, k, segments + k),
            (j, segments + k, segments + j),
            (lo, k, j),
            (hi, segments + j, segments + k),
        ]
    return v, np.array(faces, dtype=np.int64)


_PRIMITIVES = (_box, _ellipsoid, _cylinder)


def procedural_mesh(rng: np.random.Generator, max_parts: int = 4) -> PointCloud:
    """A random compound of 2..``max_parts`` boxes, ellipsoids and cylinders with random sizes, offsets and
    orientations, centred on its bounding box and scaled into the unit sphere (diameter <= 2): asymmetric
    training shapes that need no data files."""
    verts, faces, off = [], [], 0
    for i in range(int(rng.integers(2, max_parts + 1))):
        v, f = _PRIMITIVES[int(rng.integers(len(_PRIMITIVES)))]()
        v = v * rng.uniform(0.15, 0.6, size=3)
        v = v @ euler_rotation(rng.uniform(-np.pi, np.pi, size=3)).T
        v = v + (rng.uniform(-0.5, 0.5, size=3) if i else 0.0)
        verts.append(v)
        faces.append(f + off)
        off += len(v)
    v = np.concatenate(verts)
    v -= 0.5 * (v.min(0) + v.max(0))
    v /= np.linalg.norm(v, axis=1).max()
    return PointCloud(v, None, np.concatenate(faces), "procedural")


# ------------------------------------------------------------------------------------------------ pairs
def euler_rotation(angles) -> np.ndarray:
    """Rotation ``Rz(c) @ Ry(b) @ Rx(a)`` for angles ``(a, b, c)`` in radians, ``[..., 3] -> [..., 3, 3]``."""
    a = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.stack([
        np.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
        np.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
        np.stack([-sy, cy * sx, cy * cx], -1),
    ], -2)  # fmt: skip
    return r


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
    src = _crop(_sample_object(obj, n, rng), cfg.keep, rng)
    tgt = _crop(_sample_object(obj, n, rng), cfg.keep, rng)
    rot = euler_rotation(np.deg2rad(rng.uniform(-cfg.max_angle, cfg.max_angle, size=3)))
    trans = rng.uniform(-cfg.max_translation, cfg.max_translation, size=3) * r
    tgt = tgt @ rot.T + trans
    src, tgt = src[rng.permutation(len(src))], tgt[rng.permutation(len(tgt))]
    model = _sample_object(obj, int(cfg.num_model_points), rng)
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

    p = _existing(path)
    if not zipfile.is_zipfile(p):
        raise GeodiffError(f"{p}: not an npz file (expected the pairs `geodiff data registration` writes)")
    try:
        z = np.load(p, allow_pickle=False)
        keys = set(z.files)
    except (ValueError, OSError) as exc:
        raise GeodiffError(f"{p}: not an npz file ({type(exc).__name__}: {exc})") from None
    need = {*_PAIR_ARRAYS, *(f"{k}_counts" for k in _PAIR_ARRAYS), "pose", "diameter", "unit", "meta"}
    if not need <= keys:
        raise GeodiffError(f"{p}: not a registration pairs file (missing {', '.join(sorted(need - keys))})")
    meta = json.loads(str(z["meta"]))
    meta.pop("format", None)
    split = {k: np.split(z[k], np.cumsum(z[f"{k}_counts"])[:-1]) for k in _PAIR_ARRAYS}
    names = z["name"] if "name" in keys else [""] * len(z["pose"])
    pairs = [RegistrationPair(split["source"][i], split["target"][i], z["pose"][i], split["model"][i],
                              float(z["diameter"][i]), str(z["unit"][i]), str(names[i]))
             for i in range(len(z["pose"]))]  # fmt: skip
    if not all(len(v) == len(pairs) for v in split.values()):
        raise GeodiffError(f"{p}: inconsistent pair counts")
    return pairs, meta
