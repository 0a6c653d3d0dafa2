"""Classical registration baselines, batched in torch: ICP point-to-point (Besl & McKay 1992) and
point-to-plane (Chen & Medioni 1992), and, when the optional ``open3d-cpu`` is installed, Open3D's FGR and
RANSAC on FPFH features.

All return poses ``[B, 4, 4]`` (float64 NumPy) with ``target ~= R source + t``, started from the identity
(or ``init``) on the clouds as given, the way these baselines are run in the RPMNet / SE(3) diffusion
comparisons.
"""

from __future__ import annotations

import numpy as np
import torch

from geodiff.errors import GeodiffError
from geodiff.io import progress
from geodiff.manifolds import so3
from geodiff.nn.pointcloud import NearestNeighbors, knn, local_geometry, weighted_procrustes

__all__ = ["icp", "open3d_global", "open3d_available"]


@torch.no_grad()
def icp(
    source,
    target,
    method: str = "point_to_point",
    init=None,
    max_iterations: int = 50,
    max_correspondence_distance: float | None = None,
    tolerance: float = 1e-7,
    max_points: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Iterative closest point on batched clouds ``[B, N, 3]`` / ``[B, M, 3]`` (or one pair ``[N, 3]``).

    ``point_to_point`` solves each step with Kabsch; ``point_to_plane`` with the linearised 6x6 normal
    equations on PCA normals of the target (k = 16). Correspondences farther than
    ``max_correspondence_distance`` (default: all kept) are ignored. Stops when the mean residual changes by
    less than ``tolerance`` (relative). Nearest neighbours come from a KD-tree on big clouds (memory linear
    in the points); ``max_points``: iterate on a seeded random subset of that many source points (the pose
    applies to all of them; Rusinkiewicz & Levoy's random sampling).
    """
    if method not in ("point_to_point", "point_to_plane"):
        raise GeodiffError(f"icp method: expected point_to_point or point_to_plane, got {method!r}")
    src = torch.as_tensor(np.asarray(source), dtype=torch.float64)
    tgt = torch.as_tensor(np.asarray(target), dtype=torch.float64)
    single = src.dim() == 2
    if single:
        src, tgt = src[None], tgt[None]
    b = src.shape[0]
    h = torch.eye(4, dtype=torch.float64).repeat(b, 1, 1)
    if init is not None:
        h = torch.as_tensor(np.asarray(init), dtype=torch.float64).reshape(b, 4, 4).clone()
    if max_points is not None and src.shape[1] > max_points:
        keep = np.random.default_rng(seed).choice(src.shape[1], int(max_points), replace=False)
        src = src[:, torch.as_tensor(np.sort(keep))]
    neighbours = NearestNeighbors(tgt)
    normals = local_geometry(tgt, knn(tgt, 16))[0] if method == "point_to_plane" else None
    prev = torch.full((b,), float("inf"), dtype=torch.float64)
    big = src.shape[1] * b >= 100_000  # seconds per iteration: show progress on a terminal
    for _ in progress(range(max_iterations), desc=f"ICP {method}", show=big):
        moved = src @ h[:, :3, :3].transpose(1, 2) + h[:, None, :3, 3]
        dist, idx = neighbours.query(moved)
        w = torch.ones_like(dist)
        if max_correspondence_distance is not None:
            w = (dist < max_correspondence_distance).double()
        q = tgt.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))
        if method == "point_to_point":
            step = weighted_procrustes(moved, q, w + 1e-12)
        else:
            n = normals.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))
            a = torch.cat([torch.cross(moved, n, dim=-1), n], dim=-1) * w.unsqueeze(-1).sqrt()
            r = ((q - moved) * n).sum(-1) * w.sqrt()
            ata = a.transpose(1, 2) @ a + 1e-9 * torch.eye(6, dtype=torch.float64)
            x = torch.linalg.solve(ata, (a.transpose(1, 2) @ r.unsqueeze(-1))).squeeze(-1)
            step = torch.eye(4, dtype=torch.float64).repeat(b, 1, 1)
            step[:, :3, :3], step[:, :3, 3] = so3.exp(x[:, :3]), x[:, 3:]
        h = step @ h
        err = (dist * w).sum(-1) / w.sum(-1).clamp_min(1)
        if bool(((prev - err).abs() <= tolerance * err.clamp_min(1e-12)).all()):
            break
        prev = err
    out = h.numpy()
    return out[0] if single else out


def _import_open3d():
    """Import open3d; its wheels link libusb-1.0, which slim machines lack: the ``libusb-package`` wheel
    (in the ``eval`` extra) ships it, and loading it first lets the dynamic loader resolve the soname."""
    try:  # before the first import attempt: a failed import of open3d cannot be retried in-process
        import ctypes
        from pathlib import Path

        import libusb_package

        lib = next(Path(libusb_package.__file__).parent.glob("libusb-1.0*.so*"))
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except Exception:
        pass
    import open3d

    return open3d


def open3d_available() -> bool:
    try:
        _import_open3d()
    except Exception:
        return False
    return True


def open3d_global(
    source, target, method: str = "fgr", voxel_size: float | None = None, seed: int = 0
) -> np.ndarray:
    """Open3D global registration of one pair on FPFH features: ``fgr`` (Fast Global Registration, Zhou et
    al. 2016) or ``ransac`` (RANSAC on feature matches). ``voxel_size`` defaults to 5 % of the target's
    bounding-box diagonal. Needs the optional ``open3d-cpu`` package."""
    try:
        o3d = _import_open3d()
    except Exception as e:
        raise GeodiffError(f"{method} needs open3d: pip install 'geodiff[eval]' ({e})") from None
    src, tgt = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if voxel_size is None:
        voxel_size = 0.05 * float(np.linalg.norm(tgt.max(0) - tgt.min(0)))
    reg = o3d.pipelines.registration

    def prep(p):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel_size, max_nn=30))
        f = reg.compute_fpfh_feature(
            pc, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel_size, max_nn=100)
        )
        return pc, f

    (ps, fs), (pt, ft) = prep(src), prep(tgt)
    if method == "fgr":
        opt = reg.FastGlobalRegistrationOption(maximum_correspondence_distance=1.5 * voxel_size)
        res = reg.registration_fgr_based_on_feature_matching(ps, pt, fs, ft, opt)
    elif method == "ransac":
        o3d.utility.random.seed(seed)
        res = reg.registration_ransac_based_on_feature_matching(
            ps, pt, fs, ft, True, 1.5 * voxel_size, reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
             reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel_size)],
            reg.RANSACConvergenceCriteria(100000, 0.999),
        )  # fmt: skip
    else:
        raise GeodiffError(f"open3d method: expected fgr or ransac, got {method!r}")
    return np.asarray(res.transformation, dtype=np.float64)
