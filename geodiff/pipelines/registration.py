"""Registering point clouds with a trained SE(3) diffusion registration model.

    pipe = RegistrationPipeline.from_pretrained("registration_tudl_small")
    poses = pipe(sources, targets, num_inference_steps=5).poses     # [B, 4, 4], target ~= R source + t

Each pair is centred and scaled (:func:`geodiff.models.registration.normalize_pair`), its invariant
features are computed once, and the reverse SE(3) diffusion starts at the identity: at every step the
surrogate network predicts the clean pose ``H0_hat`` from the current ``H_t`` and the scheduler moves to
``exp(g0 log H0_hat + g1 log H_t)`` with left-multiplied posterior noise (Jiang et al.). ``one_shot=True``
runs the surrogate once from the identity, without diffusion (the paper's comparison).

``refine_steps`` (default 3) then applies the surrogate at the clean step ``t = 0`` that many times more,
each time from its own last estimate: ``H <- H0_hat(H, t=0)``. At ``t = 0`` the network was trained on
nearly aligned clouds, where its distance term makes it a learned ICP; these fixed-point iterations
remove the small residual errors the few reverse steps leave (measured in README: on 60 noisy TUD-L pairs
at 45 degrees, R<5 deg recall 95 -> 100 %). ``refine_steps=0`` is the plain reverse process.

``inference="reference"`` runs the reference code's test-time loop instead (Jiang-HB/DiffusionReg
``test.py`` with ``utils/diffusion_scheduler.py``): a fresh ``num_inference_steps``-step cosine schedule
(s = 0.008) with noise scales sigma_r = 0.1, sigma_t = 0.01, the surrogate called at steps T .. 2 (the
last step never runs), and the pose returned is the surrogate's last clean-pose estimate ``H0_hat``, not the
last ``H_t``; no refinement. The reference's surrogate takes no time input; geodiff's is time-conditioned,
so it is fed the training step at the same fraction of its schedule (``(t + 1) T_train / steps - 1``: the
same ``abar`` when training used the cosine schedule too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from geodiff.data.pointclouds import check_cloud
from geodiff.errors import GeodiffError, GeodiffValueError, check_count
from geodiff.manifolds import se3
from geodiff.models.registration import RegistrationNet, denormalize_pose, normalize_pair
from geodiff.pipelines.base import GeodiffPipeline
from geodiff.schedulers import SE3DiffusionScheduler, SE3FlowMatchScheduler, load_scheduler

__all__ = ["RegistrationPipeline", "RegistrationPipelineOutput", "plot_registration", "register_files"]


@dataclass
class RegistrationPipelineOutput:
    """Estimated poses.

    Attributes:
        poses: ``[B, 4, 4]`` float64 rigid transforms with ``target ~= R source + t``, one per pair.
    """

    poses: np.ndarray

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, i):
        return self.poses[i]

    def __array__(self, dtype=None, copy=None):
        return self.poses if dtype is None else self.poses.astype(dtype)

    def apply(self, points, i: int = 0) -> np.ndarray:
        """``points`` ``[N, 3]`` moved by pose ``i``."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.poses[i][:3, :3].T + self.poses[i][:3, 3]


class RegistrationPipeline(GeodiffPipeline):
    """SE(3) diffusion registration (see the module docstring). ``info``: the export's record of its training
    pairs (points per cloud)."""

    FAMILY = "registration"
    MODEL = RegistrationNet

    def __init__(self, model: RegistrationNet, scheduler: SE3DiffusionScheduler, info: dict | None = None):
        if scheduler.config.prediction_type != "sample":
            raise GeodiffValueError(
                "scheduler: the registration network predicts H0 (prediction_type=sample)"
            )
        self.model, self.scheduler, self.info = model.eval(), scheduler, dict(info or {})

    @classmethod
    def _from_export(cls, model, directory, meta):
        sched = load_scheduler(directory / "scheduler", SE3DiffusionScheduler, SE3FlowMatchScheduler)
        return cls(model, sched, meta.get("data", {}))

    @property
    def num_points(self) -> int:
        """Points per cloud the model was trained with; larger inputs are subsampled to it."""
        return int(self.info.get("num_points", 1024))

    def _prepare(self, cloud, name: str, rng: np.random.Generator, max_points: int) -> np.ndarray:
        p = check_cloud(name, cloud)
        if len(p) > max_points:
            p = p[np.sort(rng.choice(len(p), max_points, replace=False))]
        return p

    @staticmethod
    def _as_list(clouds, name: str) -> list:
        """One cloud ``[N, 3]`` -> ``[cloud]``; a batch ``[B, N, 3]`` or a sequence of clouds -> a list."""
        if isinstance(clouds, (np.ndarray, torch.Tensor)):
            if clouds.ndim == 2:
                return [clouds]
            if clouds.ndim == 3:
                return list(clouds)
            shape = list(clouds.shape)
            raise GeodiffValueError(f"{name}: need [N, 3], [B, N, 3] or a list of clouds, got {shape}")
        return list(clouds)

    @torch.no_grad()
    def __call__(
        self,
        source,
        target,
        num_inference_steps: int = 5,
        generator: torch.Generator | None = None,
        seed: int | None = 0,
        one_shot: bool = False,
        refine_steps: int = 3,
        batch_size: int = 16,
        max_points: int | None = None,
        progress: bool | None = None,
        inference: Literal["geodiff", "reference"] = "geodiff",
    ) -> RegistrationPipelineOutput:
        """Poses with ``target ~= R source + t`` for one pair (clouds ``[N, 3]``) or a batch (``[B, N, 3]``,
        or lists of clouds whose sizes may differ), NumPy or torch. Clouds larger than ``max_points``
        (default: the training size) are randomly subsampled (``seed``). ``generator`` (default: seeded with
        ``seed``) draws the reverse process's noise. ``one_shot``: the surrogate once, no diffusion;
        ``refine_steps``: extra clean-step (t = 0) passes of the surrogate afterwards; 0 turns them off.
        ``inference="reference"``: the reference code's test loop (module docstring; ``refine_steps`` and
        ``one_shot`` do not apply)."""
        refine_steps = check_count("refine_steps", refine_steps)
        if inference not in ("geodiff", "reference"):
            raise GeodiffValueError(f"inference: expected geodiff or reference, got {inference!r}")
        if inference == "reference" and (one_shot or int(num_inference_steps) < 2):
            raise GeodiffValueError("inference=reference: needs 2 or more steps and no one_shot")
        if inference == "reference" and isinstance(self.scheduler, SE3FlowMatchScheduler):
            raise GeodiffValueError("inference=reference: the reference's test loop is for diffusion "
                                    "exports; this one is flow matching")  # fmt: skip
        sources, targets = self._as_list(source, "source"), self._as_list(target, "target")
        if len(sources) != len(targets):
            raise GeodiffValueError(f"source/target: {len(sources)} sources but {len(targets)} targets")
        if len(sources) == 0:
            raise GeodiffValueError("source: empty batch (no pairs to register)")
        rng = np.random.default_rng(seed)
        cap = int(max_points or self.num_points)
        src = [self._prepare(s, f"source[{i}]", rng, cap) for i, s in enumerate(sources)]
        tgt = [self._prepare(t, f"target[{i}]", rng, cap) for i, t in enumerate(targets)]
        gen = self.generator(generator, seed)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
            groups.setdefault((len(s), len(t)), []).append(i)
        out = np.zeros((len(src), 4, 4))
        chunks = [idx[k : k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]
        bar = self.progress_bar(progress, total=len(src), desc="registering", unit="pair")
        for chunk in chunks:
            s = torch.as_tensor(np.stack([src[i] for i in chunk]), dtype=torch.float32, device=self.device)
            t = torch.as_tensor(np.stack([tgt[i] for i in chunk]), dtype=torch.float32, device=self.device)
            if inference == "reference":
                pose = self.register_batch_reference(s, t, num_inference_steps, gen)
            else:
                pose = self.register_batch(s, t, num_inference_steps, one_shot, gen, refine_steps)
            out[chunk] = pose.double().cpu().numpy()
            bar.update(len(chunk))
        bar.close()
        return RegistrationPipelineOutput(out)

    def register_batch(self, source, target, steps: int, one_shot: bool, generator,
                       refine_steps: int = 0) -> torch.Tensor:  # fmt: skip
        """Poses ``[B, 4, 4]`` for equal-sized tensor clouds ``[B, N, 3]`` / ``[B, M, 3]`` (no input checks or
        subsampling: :meth:`register` does those; training validation calls this directly)."""
        dtype = next(self.model.parameters()).dtype
        s, t, cs, ct, scale = normalize_pair(source.to(dtype), target.to(dtype))
        feats = self.model.encode(s, t)
        h = se3.identity((s.shape[0],), dtype, s.device)
        if isinstance(self.scheduler, SE3FlowMatchScheduler) and not one_shot:  # a flow starts at its prior
            h = self.scheduler.sample_prior((s.shape[0],), generator, dtype, "cpu").to(s.device)
        T = self.scheduler.config.num_train_timesteps
        if one_shot:
            h = self.model.match(feats, s, t, h, torch.full((s.shape[0],), T - 1, device=s.device))["pose"]
        else:
            self.scheduler.set_timesteps(int(steps))
            for step_t in self.scheduler.timesteps:
                tt = torch.full((s.shape[0],), int(step_t), device=s.device)
                h0 = self.model.match(feats, s, t, h, tt)["pose"]
                h = self.scheduler.step(h0, int(step_t), h, generator=generator).prev_sample
        clean = torch.zeros(s.shape[0], dtype=torch.long, device=s.device)
        for _ in range(int(refine_steps)):
            h = self.model.match(feats, s, t, h, clean)["pose"]
        if not bool(torch.isfinite(h).all()):
            raise GeodiffError("registration produced a non-finite pose (degenerate input?)")
        return denormalize_pose(h, cs, ct, scale)

    def reference_scheduler(self, steps: int) -> SE3DiffusionScheduler:
        """The reference's test-time schedule: ``steps`` cosine steps (s = 0.008), sigma_r 0.1, sigma_t 0.01
        (Jiang-HB/DiffusionReg ``test.py`` ``init_opts``)."""
        return SE3DiffusionScheduler(num_train_timesteps=int(steps), beta_schedule="cosine", cosine_s=0.008,
                                     sigma_r=0.1, sigma_t=0.01, prediction_type="sample")  # fmt: skip

    def register_batch_reference(self, source, target, steps: int, generator) -> torch.Tensor:
        """:meth:`register_batch` with the reference code's test loop (see the module docstring)."""
        dtype = next(self.model.parameters()).dtype
        s, t, cs, ct, scale = normalize_pair(source.to(dtype), target.to(dtype))
        feats = self.model.encode(s, t)
        h = se3.identity((s.shape[0],), dtype, s.device)
        sched = self.reference_scheduler(steps)
        sched.set_timesteps(int(steps))
        T = self.scheduler.config.num_train_timesteps
        h0 = h
        for step_t in sched.timesteps[:-1]:  # the reference's t = T .. 2 (1-based): the last step never runs
            k = max(0, round((int(step_t) + 1) * T / int(steps)) - 1)  # that point of the training schedule
            h0 = self.model.match(feats, s, t, h, torch.full((s.shape[0],), k, device=s.device))["pose"]
            h = sched.step(h0, int(step_t), h, generator=generator).prev_sample
        if not bool(torch.isfinite(h0).all()):
            raise GeodiffError("registration produced a non-finite pose (degenerate input?)")
        return denormalize_pose(h0, cs, ct, scale)


ICP_POINTS = 50_000  # ICP iterates on at most this many (seeded) source points unless max_points is set


def register_files(source: str | os.PathLike, target: str | os.PathLike, method: str = "diffusion",
                   pipe: RegistrationPipeline | None = None, num_inference_steps: int = 5, seed: int = 0,
                   refine_steps: int = 3, max_points: int | None = None) -> dict:  # fmt: skip
    """Register two point-cloud files (PLY, OFF, XYZ/TXT, NPY; ``target ~= R source + t``) with ``method``:
    ``diffusion`` or ``one_shot`` (``pipe``), ``icp_point`` or ``icp_plane``; what ``geodiff register``
    runs. Returns the JSON record (``transform``, ``chamfer`` after alignment, the settings) and, under
    ``_``-prefixed keys, the clouds and the moved source for the caller's files."""
    from geodiff.data.pointclouds import load_point_cloud
    from geodiff.metrics.pose import chamfer_distance
    from geodiff.pipelines.icp import icp

    src, tgt = load_point_cloud(Path(source)), load_point_cloud(Path(target))
    s, t = check_cloud(f"{source}", src.points), check_cloud(f"{target}", tgt.points)
    ext_s, ext_t = np.ptp(s, axis=0).max(), np.ptp(t, axis=0).max()
    if max(ext_s, ext_t) > 20 * min(ext_s, ext_t):
        raise GeodiffError(
            f"source/target: extents differ {max(ext_s, ext_t) / min(ext_s, ext_t):.0f}x "
            f"({ext_s:.4g} vs {ext_t:.4g}); mismatched units (mm vs m)?"
        )
    learned = method in ("diffusion", "one_shot")
    refine = check_count("refine_steps", refine_steps) if learned else None
    if learned:
        if pipe is None:
            raise GeodiffValueError(f"method={method} needs a registration pipeline")
        pose = pipe(s, t, num_inference_steps, one_shot=method == "one_shot", seed=seed,
                    max_points=max_points, progress=False, refine_steps=refine).poses[0]  # fmt: skip
    elif method in ("icp_point", "icp_plane"):
        pose = icp(s, t, "point_to_point" if method == "icp_point" else "point_to_plane",
                   max_points=max_points or ICP_POINTS, seed=seed)  # fmt: skip
    else:
        raise GeodiffError(f"method: {method!r} is not one of diffusion, one_shot, icp_point, icp_plane")
    if not np.isfinite(pose).all():
        raise GeodiffError(f"{method}: the pose is not finite (the numbers overflowed); rescale the clouds")
    moved = s @ pose[:3, :3].T + pose[:3, 3]
    normals = src.normals @ pose[:3, :3].T if src.normals is not None else None
    return {"transform": pose.tolist(), "method": method, "source": str(source), "target": str(target),
            "num_inference_steps": int(num_inference_steps), "chamfer": float(chamfer_distance(moved, t)[0]),
            "refine_steps": refine, "ckpt": None, "_pose": pose, "_source": s, "_target": t, "_moved": moved,
            "_moved_normals": normals}  # fmt: skip


def write_registration(r: dict, output=None, aligned=None, plot=None) -> list[str]:
    """Write what ``geodiff register`` writes for a :func:`register_files` record: the JSON (``output``), the
    moved source as PLY (``aligned``), a before/after PNG (``plot``); returns the lines it prints."""
    from geodiff.data.pointclouds import write_ply
    from geodiff.io import write_json

    with np.printoptions(precision=6, suppress=True):
        lines = [f"transform (target ~= R source + t), {r['method']}:\n{np.asarray(r['transform'])}",
                 f"Chamfer distance after alignment: {r['chamfer']:.6g} (source units)"]  # fmt: skip
    if output:
        lines.append(f"JSON {write_json(output, {k: v for k, v in r.items() if not k.startswith('_')})}")
    if aligned:
        lines.append(f"PLY  {write_ply(aligned, r['_moved'], r['_moved_normals'])}")
    if plot:
        png = plot_registration(r["_source"], r["_target"], r["_pose"], plot, title=r["method"])
        lines.append(f"PNG  {png}")
    return lines


def plot_registration(source, target, pose, path: str | os.PathLike, title: str = "", max_points: int = 2000):
    """Before/after PNG: the target (blue) with the source (orange) as given and moved by ``pose``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import save_figure

    rng = np.random.default_rng(0)

    def sub(a):
        a = np.asarray(a, dtype=np.float64)
        return a[rng.choice(len(a), max_points, replace=False)] if len(a) > max_points else a

    s, t = sub(source), sub(target)
    moved = s @ np.asarray(pose)[:3, :3].T + np.asarray(pose)[:3, 3]
    fig = plt.figure(figsize=(10, 5))
    for k, (a, label) in enumerate(((s, "before"), (moved, "after"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax.scatter(*t.T, s=1, c="tab:blue", label="target")
        ax.scatter(*a.T, s=1, c="tab:orange", label="source")
        ax.set_title(f"{label} {title}".strip())
        allp = np.concatenate([t, a])
        c, r = allp.mean(0), np.abs(allp - allp.mean(0)).max()
        ax.set_xlim(c[0] - r, c[0] + r)
        ax.set_ylim(c[1] - r, c[1] + r)
        ax.set_zlim(c[2] - r, c[2] + r)
        ax.legend(loc="upper right", markerscale=6)
    save_figure(fig, path)
    return Path(path)
