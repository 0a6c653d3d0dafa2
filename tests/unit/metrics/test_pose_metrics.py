"""Pose metrics against hand-computed values: rotation / translation error, ADD, ADD-S (symmetric objects),
Chamfer distance, recalls, units."""

import numpy as np
import pytest

from geodiff.data.shapes import euler_rotation
from geodiff.errors import GeodiffValueError
from geodiff.metrics.pose import (
    add,
    add_s,
    chamfer_distance,
    cm_in_units,
    pose_metrics,
    rotation_error_deg,
    summarize_pose_metrics,
    translation_error,
)


def pose(r=None, t=(0, 0, 0)):
    h = np.eye(4)
    h[:3, :3], h[:3, 3] = np.eye(3) if r is None else r, t
    return h


def test_rotation_and_translation_errors():
    for deg in (0.0, 1e-3, 30.0, 90.0, 179.9, 180.0):
        r = euler_rotation([0, 0, np.deg2rad(deg)])
        assert rotation_error_deg(pose(), pose(r))[0] == pytest.approx(deg, abs=1e-5)
    a = pose(euler_rotation([0.3, -0.2, 1.0]), (1, 2, 3))
    b = pose(euler_rotation([0.3, -0.2, 1.0]) @ euler_rotation([0.1, 0, 0]), (1, 2, 7))
    assert rotation_error_deg(a, b)[0] == pytest.approx(np.rad2deg(0.1))
    assert translation_error(a, b)[0] == pytest.approx(4.0)
    with pytest.raises(GeodiffValueError, match="4, 4"):
        rotation_error_deg(np.eye(3), np.eye(3))


def test_add_and_add_s():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(50, 3))
    assert add(pose(), pose(t=(0, 3, 4)), m)[0] == pytest.approx(5.0)
    assert add(pose(), pose(), m)[0] == 0
    # a ring of points is symmetric under rotations about z by its spacing: ADD-S 0, ADD > 0
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = np.c_[np.cos(ang), np.sin(ang), np.zeros(12)]
    sym = pose(euler_rotation([0, 0, 2 * np.pi / 12]))
    assert add_s(sym, pose(), ring)[0] == pytest.approx(0, abs=1e-12)
    assert add(sym, pose(), ring)[0] == pytest.approx(2 * np.sin(np.pi / 12))
    # ADD-S never exceeds ADD
    p = pose(euler_rotation(rng.normal(size=3)), rng.normal(size=3))
    assert add_s(p, pose(), m)[0] <= add(p, pose(), m)[0]


def test_chamfer_and_units():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 0], [1, 0, 1]])
    assert chamfer_distance(a, b)[0] == pytest.approx(0.5)
    assert (
        cm_in_units("mm", 100) == 10 and cm_in_units("m", 1) == 0.01 and cm_in_units("unitless", 2.0) == 0.02
    )


def test_pose_metrics_and_summary_recalls():
    true = np.stack([pose(), pose(), pose(), pose()])
    pred = np.stack([pose(euler_rotation([0, 0, np.deg2rad(d)]), (t, 0, 0))
                     for d, t in ((1, 5), (7, 15), (15, 30), (40, 100))])  # fmt: skip
    m = np.random.default_rng(0).normal(size=(4, 30, 3)) * 50
    per = pose_metrics(pred, true, m, diameter=200.0, unit="mm")
    np.testing.assert_allclose(per["translation_error_cm"], [0.5, 1.5, 3.0, 10.0])
    src = np.random.default_rng(1).normal(size=(4, 20, 3))
    tgt = np.einsum("bij,bnj->bni", pred[:, :3, :3], src) + pred[:, None, :3, 3]
    with_cd = pose_metrics(pred, true, m, 200.0, "mm", src, tgt)
    np.testing.assert_allclose(with_cd["chamfer"], 0, atol=1e-12)  # the estimate maps source onto target
    assert "chamfer_mean" in summarize_pose_metrics(with_cd) and "chamfer" not in per
    s = summarize_pose_metrics(per)
    assert (
        s["rotation_recall_5deg"] == 25
        and s["rotation_recall_10deg"] == 50
        and s["rotation_recall_20deg"] == 75
    )
    assert s["translation_recall_1cm"] == 25 and s["translation_recall_2cm"] == 50
    assert s["translation_recall_5cm"] == 75 and s["num_pairs"] == 4
    assert s["rotation_error_median_deg"] == pytest.approx(11.0)
