"""ADE/FDE (avg and min of K), constant-velocity and linear baselines, marginal score: known answers."""

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.metrics.trajectories import (
    constant_velocity,
    displacement_errors,
    item_errors,
    linear_extrapolation,
    marginal_score,
)


def test_ade_fde_known_values():
    target = torch.zeros(2, 4, 3)
    pred = torch.zeros(2, 4, 3)
    pred[0, :, 0] = torch.tensor([1.0, 1.0, 1.0, 3.0])  # node 0: errors 1,1,1,3 -> ADE 1.5, FDE 3
    pred[1, :, 1] = 2.0  # node 1: errors 2 -> ADE 2, FDE 2
    e = displacement_errors(pred, target)
    assert e["ade"] == pytest.approx(1.75) and e["fde"] == pytest.approx(2.5) and e["k"] == 1
    assert e["ade_min"] == e["ade_avg"]


def test_avg_and_min_over_k():
    target = torch.zeros(2, 3, 2)
    good, bad = torch.zeros(2, 3, 2), torch.full((2, 3, 2), 3.0)  # |(3, 3)| = sqrt(18)
    mixed = torch.stack([good.clone(), bad.clone()])
    mixed[0, 1], mixed[1, 1] = bad[1], good[1]  # node 0 best in sample 0, node 1 best in sample 1
    e = displacement_errors(mixed, target)
    r = 18**0.5
    assert e["ade_avg"] == pytest.approx(r / 2) and e["ade_min"] == pytest.approx(0.0)
    batch = torch.tensor([0, 0])  # one system: a single sample must serve both nodes
    s = displacement_errors(mixed, target, batch, min_over="system")
    assert s["ade_min"] == pytest.approx(r / 2)
    # as GeoTDM's N-body scoring: min ADE and min FDE each over the samples, not the FDE of the best-ADE one
    late, early = torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)
    late[:, :2] = 1.0  # wrong at first, right at the end: ADE 2 sqrt(2) / 3, FDE 0
    early[:, 2] = 1.0  # right at first, wrong at the end: ADE sqrt(2) / 3, FDE sqrt(2)
    s = displacement_errors(torch.stack([late, early]), target, batch, min_over="system")
    assert s["ade_min"] == pytest.approx(2**0.5 / 3) and s["fde_min"] == pytest.approx(0.0)
    with pytest.raises(GeodiffValueError, match="do not match"):
        displacement_errors(mixed[:, :, :2], target)
    nan = mixed.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(GeodiffValueError, match="NaN"):
        displacement_errors(nan, target)


def test_item_errors_per_node_and_per_system():
    """Per-item errors: known values, and their means are exactly displacement_errors' figures."""
    target = torch.zeros(3, 2, 2, dtype=torch.float64)
    pred = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    pred[0, 0, :, 0] = 1.0  # sample 0: node 0 off by 1 in both frames
    pred[1, 0, 1, 1] = 4.0  # sample 1: node 0 off by 4 at the last frame only
    pred[1, 2, :, 0] = 2.0  # sample 1: node 2 off by 2
    e = item_errors(pred, target)
    torch.testing.assert_close(e["ade_avg"], torch.tensor([1.5, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(e["ade_min"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(e["fde_min"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    batch = torch.tensor([0, 0, 1])
    s = item_errors(pred, target, batch, over="system")
    # system 0: sample ADEs (1 + 0) / 2 = 0.5 and (2 + 0) / 2 = 1; FDEs 0.5 and 2
    torch.testing.assert_close(s["ade_min"], torch.tensor([0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(s["fde_avg"], torch.tensor([1.25, 1.0], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    pred, target, batch = (
        torch.randn(4, 7, 5, 3, generator=g),
        torch.randn(7, 5, 3, generator=g),
        torch.tensor([0, 0, 0, 1, 1, 2, 2]),
    )
    for over in ("node", "system"):
        d, it = (
            displacement_errors(pred, target, batch, min_over=over),
            item_errors(pred, target, batch, over),
        )
        assert d["ade_min"] == pytest.approx(float(it["ade_min"].mean()), rel=1e-12)
        assert d["fde_min"] == pytest.approx(float(it["fde_min"].mean()), rel=1e-12)
    with pytest.raises(GeodiffValueError, match="batch vector"):
        item_errors(pred, target, over="system")
    with pytest.raises(GeodiffValueError, match="node or system"):
        item_errors(pred, target, batch, over="agent")


def test_baselines_are_exact_on_straight_lines():
    t = torch.arange(10, dtype=torch.float64).view(1, -1, 1)
    v = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, 0.5]], dtype=torch.float64).unsqueeze(1)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64).unsqueeze(1) + t * v
    obs, fut = x[:, :4], x[:, 4:]
    torch.testing.assert_close(constant_velocity(obs, 6), fut)
    torch.testing.assert_close(linear_extrapolation(obs, 6), fut)
    # noisy observations: the least-squares line averages the noise; constant velocity follows the last step
    wobble = obs.clone()
    wobble[:, -1] += 0.5
    assert (constant_velocity(wobble, 6) - fut).norm() > (linear_extrapolation(wobble, 6) - fut).norm()
    with pytest.raises(GeodiffValueError, match="at least 2"):
        constant_velocity(obs[:, :1], 3)


def test_marginal_score():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, 3, generator=g)
    b = torch.randn(5000, 3, generator=g)
    same = marginal_score(a, a)
    close = marginal_score(b, a)
    far = marginal_score(b + 1.0, a)
    assert same == 0.0 and 0 < close < 0.005 < far
    with pytest.raises(GeodiffValueError, match="same dimension"):
        marginal_score(a[:, :2], a)
