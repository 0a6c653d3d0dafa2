"""Pose and registration metrics (the SE(3) diffusion registration protocol of Jiang et al. 2023).

* rotation error: ``arccos(clip((tr(R_hat^T R) - 1) / 2, -1, 1))`` in degrees (isotropic),
* translation error: Euclidean distance ``|t_hat - t|`` (not squared), in the data's units,
* ADD: mean distance between the object's points under the two poses; ADD-S: mean distance from each
  point under the true pose to the closest point under the estimate (for symmetric objects); a pose is
  correct when ADD(-S) < 0.1 x the object's diameter,
* recall at rotation thresholds 5/10/20 degrees and translation thresholds 1/2/5 cm (10/20/50 mm for
  millimetre data; for unitless data "1 cm" is 1 % of the object's diameter),
* symmetric Chamfer distance between the source moved by the estimate and the target.

The reference code's translation recall (Jiang-HB/DiffusionReg ``utils/criterion.py``: ``evaluate_Rt`` and
``mAP``) compares the *squared* distance in cm^2 with 1/2/5, i.e. the distance with 1/1.41/2.24 cm; it is
reported beside geodiff's as ``translation_recall_{1,2,5}cm_squared`` (:func:`reference_recall`).

Functions take NumPy or torch arrays with a leading batch dimension and return NumPy float64.
"""

from __future__ import annotations

import numpy as np
import torch

from geodiff.errors import GeodiffValueError
from geodiff.nn.pointcloud import NearestNeighbors

__all__ = [
    "rotation_error_deg",
    "translation_error",
    "add",
    "add_s",
    "chamfer_distance",
    "cm_in_units",
    "pose_metrics",
    "reference_recall",
    "summarize_pose_metrics",
    "ROTATION_THRESHOLDS",
    "TRANSLATION_THRESHOLDS_CM",
]

ROTATION_THRESHOLDS = (5.0, 10.0, 20.0)
TRANSLATION_THRESHOLDS_CM = (1.0, 2.0, 5.0)
_MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))  # a copy: inputs may be read-only views


def _poses(name: str, h) -> torch.Tensor:
    h = _t(h)
    if h.dim() == 2:
        h = h[None]
    if h.shape[-2:] != (4, 4):
        raise GeodiffValueError(f"{name}: expected poses [B, 4, 4], got {list(h.shape)}")
    return h


def rotation_error_deg(pred, true) -> np.ndarray:
    """Isotropic rotation error in degrees, ``[B]``."""
    p, t = _poses("pred", pred), _poses("true", true)
    r = p[:, :3, :3].transpose(-1, -2) @ t[:, :3, :3]
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)).numpy()


def translation_error(pred, true) -> np.ndarray:
    """Euclidean translation error ``|t_hat - t|``, ``[B]``."""
    p, t = _poses("pred", pred), _poses("true", true)
    return (p[:, :3, 3] - t[:, :3, 3]).norm(dim=-1).numpy()


def _move(h: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    return pts @ h[:, :3, :3].transpose(-1, -2) + h[:, None, :3, 3]


def add(pred, true, model) -> np.ndarray:
    """ADD: mean ``|H_hat p - H p|`` over model points ``[B, K, 3]``, ``[B]``."""
    p, t, m = _poses("pred", pred), _poses("true", true), _t(model)
    m = m[None] if m.dim() == 2 else m
    return (_move(p, m) - _move(t, m)).norm(dim=-1).mean(-1).numpy()


def add_s(pred, true, model) -> np.ndarray:
    """ADD-S: mean over model points under the true pose of the distance to the closest model point
    under the estimated pose, ``[B]``."""
    p, t, m = _poses("pred", pred), _poses("true", true), _t(model)
    m = m[None] if m.dim() == 2 else m
    return NearestNeighbors(_move(p, m)).query(_move(t, m))[0].mean(-1).numpy()


def chamfer_distance(a, b) -> np.ndarray:
    """Symmetric Chamfer distance (mean closest-point distance both ways, averaged), ``[B]``; memory linear in
    the points."""
    a, b = _t(a), _t(b)
    a, b = a[None] if a.dim() == 2 else a, b[None] if b.dim() == 2 else b
    ab, ba = NearestNeighbors(b).query(a)[0], NearestNeighbors(a).query(b)[0]  # a KD-tree on big clouds
    return (0.5 * (ab.mean(-1) + ba.mean(-1))).numpy()


def cm_in_units(unit: str, diameter: float) -> float:
    """One centimetre in the data's units (``mm``/``cm``/``m``); 1 % of the diameter for unitless data."""
    if unit in _MM_PER_UNIT:
        return 10.0 / _MM_PER_UNIT[unit]
    return 0.01 * float(diameter)


def pose_metrics(
    pred, true, model, diameter, unit="unitless", source=None, target=None
) -> dict[str, np.ndarray]:
    """Per-pair metrics ``[B]``: rotation error (deg), translation error (data units and cm), ADD, ADD-S
    (data units, and as fractions of the diameter), and Chamfer distance when ``source``/``target`` are
    given."""
    p, t = _poses("pred", pred), _poses("true", true)
    diam = np.broadcast_to(np.asarray(diameter, dtype=np.float64), (len(p),))
    units = np.broadcast_to(np.asarray(unit), (len(p),))
    cm = np.array([cm_in_units(str(u), d) for u, d in zip(units, diam, strict=True)])
    out = {
        "rotation_error_deg": rotation_error_deg(p, t),
        "translation_error": translation_error(p, t),
        "add": add(p, t, model),
        "add_s": add_s(p, t, model),
    }
    out["translation_error_cm"] = out["translation_error"] / cm
    out["add_over_diameter"] = out["add"] / diam
    out["add_s_over_diameter"] = out["add_s"] / diam
    if source is not None and target is not None:
        src = _t(source)
        out["chamfer"] = chamfer_distance(_move(p, src[None] if src.dim() == 2 else src), target)
    return out


def reference_recall(errors, thresholds) -> np.ndarray:
    """Recall (percent) at each of the increasing ``thresholds`` as the registration reference computes it:
    a histogram over the bins ``[0, th_1), [th_1, th_2), ..., [th_{n-1}, th_n]`` (the last one closed) and its
    cumulative sum over the number of pairs."""
    e = np.asarray(errors, dtype=np.float64)
    hist, _ = np.histogram(e, np.concatenate([[0.0], np.asarray(thresholds, dtype=np.float64)]))
    return 100 * np.cumsum(hist) / max(len(e), 1)


def summarize_pose_metrics(per_pair: dict[str, np.ndarray]) -> dict[str, float]:
    """Recalls (percent) and means/medians over pairs, the numbers a registration table reports."""
    r, tcm = per_pair["rotation_error_deg"], per_pair["translation_error_cm"]
    s = {"num_pairs": int(len(r))}
    for th in ROTATION_THRESHOLDS:
        s[f"rotation_recall_{th:g}deg"] = float(100 * np.mean(r < th))
    for th in TRANSLATION_THRESHOLDS_CM:
        s[f"translation_recall_{th:g}cm"] = float(100 * np.mean(tcm < th))
    squared = reference_recall(tcm**2, TRANSLATION_THRESHOLDS_CM)  # the reference code's criterion
    for th, v in zip(TRANSLATION_THRESHOLDS_CM, squared, strict=True):
        s[f"translation_recall_{th:g}cm_squared"] = float(v)
    s["add_0.1d"] = float(100 * np.mean(per_pair["add_over_diameter"] < 0.1))
    s["add_s_0.1d"] = float(100 * np.mean(per_pair["add_s_over_diameter"] < 0.1))
    s["rotation_error_mean_deg"] = float(np.mean(r))
    s["rotation_error_median_deg"] = float(np.median(r))
    s["translation_error_mean"] = float(np.mean(per_pair["translation_error"]))
    s["translation_error_median"] = float(np.median(per_pair["translation_error"]))
    if "chamfer" in per_pair:
        s["chamfer_mean"] = float(np.mean(per_pair["chamfer"]))
    return s
