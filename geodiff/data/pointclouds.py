"""Point clouds and meshes as files: PLY (ascii, binary little / big endian; any vertex properties, polygon
faces triangulated as fans), OFF (also ModelNet's glued ``OFF490 518 0`` first line), XYZ / TXT (3 columns,
or 6 with normals) and NPY (``[N, 3]`` or ``[N, 6]``); the data sets ModelNet40 (PointNet HDF5) and BOP /
TUD-L model folders. Every reader returns a :class:`PointCloud` (float64 points, optional normals and
triangles) and raises a one-line :class:`~geodiff.errors.GeodiffError` on a malformed file. Surface sampling
and procedural shapes are in :mod:`geodiff.data.shapes`, registration pairs in :mod:`geodiff.data.pairs`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodiff.errors import GeodiffError, GeodiffValueError

__all__ = ["PointCloud", "read_ply", "write_ply", "read_off", "read_xyz", "read_npy", "load_point_cloud",
           "existing_path", "check_cloud", "load_modelnet40_h5", "load_tudl_models",
           "cloud_diameter"]  # fmt: skip


@dataclass
class PointCloud:
    """Points ``[N, 3]`` (float64), optional per-point normals ``[N, 3]`` and triangles ``[F, 3]`` (int)."""

    points: np.ndarray
    normals: np.ndarray | None = None
    faces: np.ndarray | None = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.points)


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
    path = existing_path(path)
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
    path = existing_path(path)
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
    path = existing_path(path)
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
    path = existing_path(path)
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


def existing_path(path) -> Path:
    p = Path(path)
    if p.exists() and not p.is_file():
        raise GeodiffError(f"{p}: not a regular file")
    if not p.is_file():
        raise GeodiffError(f"{p}: no such file")
    return p


MAX_COORDINATE = 1e9  # beyond it, squared distances overflow float32


def check_cloud(name: str, points) -> np.ndarray:
    """``points`` as a float64 ``[N, 3]`` array, or a one-line error for clouds no registration can use:
    wrong shape, empty, NaN/inf, coordinates beyond 1e9, fewer than 3 points, all points identical, all on one
    line."""
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
    scale = np.abs(p).max()
    if scale > MAX_COORDINATE:
        raise GeodiffValueError(f"{name}: coordinates up to {scale:.3g}, beyond {MAX_COORDINATE:.0e} (their "
                                "squares overflow float32): rescale the clouds")  # fmt: skip
    c = p - p.mean(axis=0)
    sv = np.linalg.svd(c, compute_uv=False)
    if sv[0] <= 1e-12 * max(scale, 1e-300) * np.sqrt(len(p)):
        raise GeodiffValueError(f"{name}: all {len(p)} points are identical (a degenerate cloud)")
    if sv[1] <= 1e-9 * sv[0]:
        raise GeodiffValueError(f"{name}: all points lie on one line (the rotation about it is undefined)")
    return p


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
