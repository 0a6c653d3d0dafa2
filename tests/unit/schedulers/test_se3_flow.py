"""Geodesic flow matching on SO(3) x R^3: the common scheduler contract, the path is the geodesic (the angle
to the data grows linearly with the noise level), the sampler is left-equivariant under SE(3) and lands on
an exact prediction in any number of steps, the IGSO(3) prior, bad input."""

import math

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.manifolds import se3, so3
from geodiff.schedulers import SE3FlowMatchScheduler
from tests.unit.schedulers.test_se3 import _PoseHooks


class _FlowPoseHooks(_PoseHooks):
    scheduler_class = SE3FlowMatchScheduler
    oracle_num_steps = (None, 5, 1)

    def test_determinism_with_generator(self):  # deterministic Euler steps
        sched = self.make_scheduler()
        x0, kw = self.make_clean_sample(torch.Generator().manual_seed(0))
        sched.set_timesteps(4)
        x = self.draw_prior(sched, x0, torch.Generator().manual_seed(5), kw)
        t = sched.timesteps[0]
        a = sched.step(x0, t, x, generator=torch.Generator().manual_seed(3)).prev_sample
        b = sched.step(x0, t, x, generator=torch.Generator().manual_seed(4)).prev_sample
        assert torch.equal(a, b)

    def test_alphas_cumprod_monotone(self):
        ac = self.make_scheduler().alphas_cumprod
        assert ac.dtype == torch.float64 and bool((ac[1:] < ac[:-1]).all()) and float(ac[-1]) == 0.0


class TestSE3FlowUniform(_FlowPoseHooks):
    def get_scheduler_config(self):
        return dict(num_train_timesteps=100)


class TestSE3FlowIGSO3(_FlowPoseHooks):
    def get_scheduler_config(self):
        return dict(num_train_timesteps=100, rotation_prior="igso3", prior_sigma_r=0.5, prior_sigma_t=0.2)


def test_path_is_the_geodesic():
    sched = SE3FlowMatchScheduler(num_train_timesteps=10)
    g = torch.Generator().manual_seed(0)
    data = se3.random_pose((32,), generator=g, dtype=torch.float64)
    noise = sched.sample_prior((32,), generator=g, dtype=torch.float64)
    total = so3.geodesic_distance(se3.to_rt(data)[0], se3.to_rt(noise)[0])
    for t in (0, 4, 9):
        h = sched.add_noise(data, noise, t)
        s = (t + 1) / 10
        r, x = se3.to_rt(h)
        torch.testing.assert_close(so3.geodesic_distance(se3.to_rt(data)[0], r), s * total)
        torch.testing.assert_close(so3.geodesic_distance(r, se3.to_rt(noise)[0]), (1 - s) * total)
        torch.testing.assert_close(x, (1 - s) * se3.to_rt(data)[1] + s * se3.to_rt(noise)[1])
        torch.testing.assert_close(
            r.transpose(-1, -2) @ r, torch.eye(3, dtype=torch.float64).expand(32, 3, 3)
        )
    torch.testing.assert_close(sched.add_noise(data, noise, 9), noise)


def test_sampler_is_left_equivariant_under_se3():
    sched = SE3FlowMatchScheduler(num_train_timesteps=50)
    sched.set_timesteps(5)
    g = torch.Generator().manual_seed(1)
    target = se3.random_pose((8,), generator=g, dtype=torch.float64)
    start = sched.sample_prior((8,), generator=g, dtype=torch.float64)
    frame = se3.random_pose((), generator=g, dtype=torch.float64)

    def run(h, goal):
        for t in sched.timesteps:  # a "model" that predicts half-way between the sample and the goal
            pred = sched._towards(h, goal, torch.full((*h.shape[:-2], 1), 0.5, dtype=h.dtype))
            h = sched.step(pred, t, h).prev_sample
        return h

    torch.testing.assert_close(run(frame @ start, frame @ target), frame @ run(start, target))
    torch.testing.assert_close(sched.add_noise(frame @ target, frame @ start, 20),
                               frame @ sched.add_noise(target, start, 20))  # fmt: skip


def test_igso3_prior_is_concentrated():
    g = torch.Generator().manual_seed(0)
    tight = SE3FlowMatchScheduler(rotation_prior="igso3", prior_sigma_r=0.2, prior_sigma_t=0.1)
    wide = SE3FlowMatchScheduler()
    a = so3.angle(se3.to_rt(tight.sample_prior((2000,), generator=g, dtype=torch.float64))[0])
    b = so3.angle(se3.to_rt(wide.sample_prior((2000,), generator=g, dtype=torch.float64))[0])
    assert float(a.mean()) < 0.6 and abs(float(b.mean()) - (math.pi / 2 + 2 / math.pi)) < 0.05  # Haar mean
    x = se3.to_rt(tight.sample_prior((2000,), generator=g, dtype=torch.float64))[1]
    assert abs(float(x.std()) - 0.1) < 0.01


def test_bad_input():
    for kwargs, match in (({"rotation_prior": "normal"}, "rotation_prior"),
                          ({"prior_sigma_t": 0.0}, "prior_sigma"),
                          ({"prediction_type": "left_correction"}, "prediction_type"),
                          ({"time_shift": -1.0}, "time_shift")):  # fmt: skip
        with pytest.raises(GeodiffValueError, match=match):
            SE3FlowMatchScheduler(**kwargs)
    sched = SE3FlowMatchScheduler()
    with pytest.raises(GeodiffValueError, match="noise"):
        sched.add_noise(se3.identity((3,), torch.float64), se3.identity((2,), torch.float64), 5)
