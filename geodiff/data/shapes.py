"""Shapes for registration data: area-weighted surface sampling of triangle meshes, cloud diameters, and
procedural compounds of boxes, ellipsoids and cylinders (training shapes of unit radius)."""

from __future__ import annotations

import numpy as np

from geodiff.data.pointclouds import PointCloud
from geodiff.errors import GeodiffValueError

__all__ = ["sample_surface", "sample_object", "procedural_mesh", "euler_rotation"]  # fmt: skip


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


def sample_object(obj: PointCloud, n: int, rng: np.random.Generator) -> np.ndarray:
    if obj.faces is not None and len(obj.faces):
        return sample_surface(obj.points, obj.faces, n, rng)[0]
    m = len(obj.points)
    return obj.points[rng.choice(m, size=n, replace=n > m)].astype(np.float64)


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
