"""The optional cosine learning-rate decay (``module.lr_schedule``) and its one-line errors."""

import math

import pytest
import torch

from geodiff.errors import GeodiffError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.training.optim import cosine_factor, optimizer_config
from geodiff.training.trajectories import TrajectoryDiffusionModule


def test_cosine_factor_runs_from_one_to_the_floor():
    total, floor = 100, 0.05
    values = [cosine_factor(i, total, floor) for i in range(total + 5)]
    assert values[0] == 1.0 and values[total] == floor and values[-1] == floor
    assert values[50] == pytest.approx(floor + (1 - floor) / 2)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # never rises
    assert values[25] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi / 4)))


def test_optimizer_config_steps_the_rate_down():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=1e-3)
    assert optimizer_config(opt, "constant", None, None, 0.05) is opt
    cfg = optimizer_config(opt, "cosine", None, 10, 0.2)
    sched = cfg["lr_scheduler"]["scheduler"]
    assert cfg["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(12):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(2e-4) and rates[11] == pytest.approx(2e-4)


class _NoBound:
    estimated_stepping_batches = float("inf")


def test_an_unbounded_run_cannot_decay():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(GeodiffError, match="no step bound"):
        optimizer_config(opt, "cosine", _NoBound(), None, 0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_schedule": "step"}, "unknown schedule 'step'"),
        ({"lr_schedule": "cosine", "lr_min_ratio": -0.1}, "must lie in"),
        ({"lr_schedule": "cosine", "lr_decay_steps": 0}, "positive number of steps"),
    ],
)
def test_bad_schedules_are_refused_when_the_module_is_built(kwargs, message):
    model = GeoTDMDenoiser(
        hidden=8, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=6
    )
    with pytest.raises(GeodiffError, match=message):
        TrajectoryDiffusionModule(model, **kwargs)
