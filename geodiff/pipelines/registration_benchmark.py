"""Registration benchmark: run methods on a set of pairs and report pose metrics and time per pair.

Methods: ``diffusion`` (reverse SE(3) diffusion, ``num_inference_steps``), ``one_shot`` (the surrogate
network alone; both followed by ``refine_steps`` clean-step passes of the surrogate), ``icp_point`` /
``icp_plane`` (ICP from the identity), and with the optional open3d-cpu ``fgr`` / ``ransac`` (global
registration on FPFH features).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geodiff.data.pairs import RegistrationPair
from geodiff.errors import GeodiffError, check_count
from geodiff.metrics.pose import pose_metrics, summarize_pose_metrics

__all__ = ["METHODS", "evaluate_registration", "format_registration_report", "format_registration_table",
           "register_and_score", "run_method"]  # fmt: skip

METHODS = ("diffusion", "one_shot", "icp_point", "icp_plane", "fgr", "ransac")


def run_method(method: str, pairs: Sequence[RegistrationPair], pipeline=None, num_inference_steps: int = 5,
               seed: int = 0, progress: bool = False, refine_steps: int = 3,
               inference: str = "geodiff") -> np.ndarray:  # fmt: skip
    """Estimated poses ``[B, 4, 4]`` of ``method`` on ``pairs`` (``inference``: the learned methods' test
    loop, ``geodiff`` or ``reference``; see :class:`~geodiff.pipelines.registration.RegistrationPipeline`)."""
    from geodiff.pipelines.icp import icp, open3d_global

    src = [p.source for p in pairs]
    tgt = [p.target for p in pairs]
    if method in ("diffusion", "one_shot"):
        if pipeline is None:
            raise GeodiffError(f"method {method}: needs a trained model (ckpt=DIR)")
        if inference == "reference" and method == "one_shot":
            raise GeodiffError("methods: one_shot has no reference test loop; use inference=geodiff")
        return pipeline(src, tgt, num_inference_steps, one_shot=method == "one_shot", seed=seed,
                        progress=progress, refine_steps=refine_steps, inference=inference).poses  # fmt: skip
    if method in ("icp_point", "icp_plane"):
        kind = "point_to_point" if method == "icp_point" else "point_to_plane"
        if len({(len(s), len(t)) for s, t in zip(src, tgt, strict=True)}) == 1:
            return np.asarray(icp(np.stack(src), np.stack(tgt), kind)).reshape(len(pairs), 4, 4)
        return np.stack([icp(s, t, kind) for s, t in zip(src, tgt, strict=True)])
    if method in ("fgr", "ransac"):
        return np.stack([open3d_global(s, t, method, seed=seed) for s, t in zip(src, tgt, strict=True)])
    raise GeodiffError(f"method: unknown {method!r} (one of {', '.join(METHODS)})")


def evaluate_registration(pairs: Sequence[RegistrationPair], methods: Sequence[str], pipeline=None,
                          num_inference_steps: int = 5, seed: int = 0,
                          progress: bool = True, refine_steps: int = 3,
                          inference: str = "geodiff") -> dict:  # fmt: skip
    """Per method: the summary (recalls, mean/median errors, ADD(-S) < 0.1d, Chamfer), seconds per pair
    and the per-pair errors. Pairs must be non-empty."""
    if not pairs:
        raise GeodiffError("registration benchmark: no pairs")
    true = np.stack([p.pose for p in pairs])
    same_sizes = len({(len(p.model), len(p.source), len(p.target)) for p in pairs}) == 1
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        pred = run_method(m, pairs, pipeline, num_inference_steps, seed, progress, refine_steps, inference)
        sec = (time.perf_counter() - t0) / len(pairs)
        if same_sizes:  # one batched call
            stack = {k: np.stack([getattr(p, k) for p in pairs]) for k in ("model", "source", "target")}
            diam, units = [p.diameter for p in pairs], [p.unit for p in pairs]
            per = pose_metrics(pred, true, stack["model"], diam, units, stack["source"], stack["target"])
        else:
            rows = [pose_metrics(pred[i], true[i], p.model, p.diameter, p.unit, p.source, p.target)
                    for i, p in enumerate(pairs)]  # fmt: skip
            per = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        out[m] = {"summary": {**summarize_pose_metrics(per), "seconds_per_pair": sec},
                  "per_pair": {k: v.tolist() for k, v in per.items()}, "poses": pred.tolist()}  # fmt: skip
    return out


def format_registration_table(results: dict) -> str:
    """A fixed-width table: one row per method."""
    cols = [("rotation_recall_5deg", "R<5°"), ("rotation_recall_10deg", "R<10°"),
            ("rotation_recall_20deg", "R<20°"),
            ("translation_recall_1cm", "t<1cm"), ("translation_recall_2cm", "t<2cm"),
            ("translation_recall_5cm", "t<5cm"), ("add_0.1d", "ADD"), ("add_s_0.1d", "ADD-S"),
            ("rotation_error_mean_deg", "R mean°"), ("rotation_error_median_deg", "R med°"),
            ("seconds_per_pair", "s/pair")]  # fmt: skip
    lines = [f"{'method':<11}" + "".join(f"{c[1]:>9}" for c in cols)]
    for m, r in results.items():
        s = r["summary"]
        vals = "".join(f"{s[k]:9.3f}" if k == "seconds_per_pair" else f"{s[k]:9.1f}" for k, _ in cols)
        lines.append(f"{m:<11}{vals}")
    return "\n".join(lines)


def register_and_score(pairs: str | os.PathLike, methods: Sequence[str], pipeline=None,
                       num_inference_steps: int = 5, seed: int = 0,
                       refine_steps: int = 3, inference: str = "geodiff") -> dict:  # fmt: skip
    """Run ``methods`` on the benchmark pairs file ``pairs`` (``geodiff data registration``) and report pose
    metrics per method: what ``geodiff evaluate task=registration`` and ``eval/`` run. ``inference``:
    ``geodiff`` or ``reference`` (the reference code's test loop for ``diffusion``; no refinement)."""
    if inference not in ("geodiff", "reference"):
        raise GeodiffError(f"inference: expected geodiff or reference, got {inference!r}")
    from geodiff.data.pairs import load_pairs

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise GeodiffError(f"methods: unknown {unknown or '[]'} (choose from {', '.join(METHODS)})")
    refine = check_count("refine_steps", refine_steps) if inference == "geodiff" else 0
    loaded, meta = load_pairs(Path(pairs))
    res = evaluate_registration(loaded, methods, pipeline, int(num_inference_steps), int(seed),
                                refine_steps=refine, inference=inference)  # fmt: skip
    return {"task": "registration", "pairs": str(pairs), "num_pairs": len(loaded), "pair_config": meta,
            "num_inference_steps": int(num_inference_steps), "refine_steps": refine, "inference": inference,
            "methods": res}  # fmt: skip


def format_registration_report(report: dict) -> list[str]:
    """The header line and table ``geodiff evaluate task=registration`` prints."""
    meta = report["pair_config"]
    desc = ", ".join(f"{k}={v}" for k, v in meta.items() if k in ("source", "max_angle", "noise", "keep"))
    steps, refine = report["num_inference_steps"], report["refine_steps"]
    loop = ("the reference's test loop (5-step cosine, sigma 0.1/0.01, last H0 estimate)"
            if report.get("inference") == "reference" else f"{refine} refinement passes")  # fmt: skip
    head = f"{report['num_pairs']} pairs ({desc}); recalls in %, diffusion with {steps} steps, {loop}"
    return [head, format_registration_table(report["methods"])]
