"""E(3) flow-matching scheduler: the common scheduler contract, the linear path and its velocity, exact
Euler steps along straight paths, Heun's second order on a curved field, the shifted grid, zero CoM and
equivariance, bad input."""

import math

import pytest
import torch

from geodiff.config import build
from geodiff.errors import GeodiffValueError
from geodiff.manifolds import euclidean
from geodiff.schedulers import E3FlowMatchScheduler
from geodiff.testing import SchedulerTesterMixin, assert_equivariant

BATCH = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])


class _FlowHooks(SchedulerTesterMixin):
    scheduler_class = E3FlowMatchScheduler
    prediction_type = "sample"
    oracle_num_steps = (None, 7, 1)  # a straight path: Euler is exact on any grid, even one step

    def get_scheduler_config(self):
        return dict(num_train_timesteps=60, prediction_type=self.prediction_type)

    def make_clean_sample(self, generator):
        x0 = euclidean.remove_mean(
            torch.randn(len(BATCH), 3, generator=generator, dtype=torch.float64), BATCH
        )
        return x0, {"batch": BATCH}

    def draw_prior(self, scheduler, x0, generator, kw):
        return scheduler.sample_prior(x0.shape, batch=kw["batch"], generator=generator, dtype=x0.dtype)

    def oracle_output(self, scheduler, x0, sample, t, kw):
        s = scheduler.sigmas[int(t)]
        eps = (sample - (1 - s) * x0) / s
        return {"sample": x0.clone(), "velocity": eps - x0}[scheduler.config.prediction_type]

    # a flow's steps are deterministic and its last training step is pure noise (abar_T = 0)
    def test_determinism_with_generator(self):
        sched = self.make_scheduler()
        x0, kw = self.make_clean_sample(torch.Generator().manual_seed(0))
        sched.set_timesteps(4)
        t = sched.timesteps[0]
        x = self.draw_prior(sched, x0, torch.Generator().manual_seed(5), kw)
        out = self.oracle_output(sched, x0, x, t, kw)
        r1 = sched.step(out, t, x, generator=torch.Generator().manual_seed(3), **kw).prev_sample
        r2 = sched.step(out, t, x, generator=torch.Generator().manual_seed(4), **kw).prev_sample
        assert torch.equal(r1, r2)

    def test_alphas_cumprod_monotone(self):
        sched = self.make_scheduler()
        ac, s = sched.alphas_cumprod, sched.sigmas
        assert ac.dtype == torch.float64 and bool((ac[1:] < ac[:-1]).all()) and float(ac[-1]) == 0.0
        torch.testing.assert_close(sched.snr(torch.arange(59)), ((1 - s[:59]) / s[:59]) ** 2)


class TestFlowSample(_FlowHooks):
    pass


class TestFlowVelocity(_FlowHooks):
    prediction_type = "velocity"


def test_path_target_and_conversions_agree():
    sched = E3FlowMatchScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    x0 = euclidean.remove_mean(torch.randn(12, 3, generator=g, dtype=torch.float64), BATCH)
    eps = euclidean.remove_mean(torch.randn(12, 3, generator=g, dtype=torch.float64), BATCH)
    t = torch.tensor([10, 49, 99])
    xt = sched.add_noise(x0, eps, t, batch=BATCH)
    s = (t + 1).double() / 100
    torch.testing.assert_close(xt, (1 - s[BATCH, None]) * x0 + s[BATCH, None] * eps)
    torch.testing.assert_close(xt[BATCH == 2], eps[BATCH == 2])  # t = T - 1 is the prior itself
    for kind in ("sample", "velocity"):
        sch = E3FlowMatchScheduler(num_train_timesteps=100, prediction_type=kind)
        target = sch.training_target(x0, eps, t, batch=BATCH)
        x_hat, eps_hat = sch.convert_model_output(
            target[BATCH < 2], t[:2], xt[BATCH < 2], batch=BATCH[BATCH < 2]
        )
        torch.testing.assert_close(x_hat, x0[BATCH < 2])
        torch.testing.assert_close(eps_hat, eps[BATCH < 2])
    torch.testing.assert_close(
        E3FlowMatchScheduler(prediction_type="velocity").training_target(x0, eps, 3, BATCH), eps - x0
    )


def test_shifted_grid_spends_more_steps_near_noise():
    uniform, shifted = E3FlowMatchScheduler(), E3FlowMatchScheduler(time_shift=3.0)
    uniform.set_timesteps(10)
    shifted.set_timesteps(10)
    assert uniform.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    s = shifted.sigmas[shifted.timesteps]
    expected = [3 * u / (1 + 2 * u) for u in torch.linspace(1, 0, 11, dtype=torch.float64)[:-1].tolist()]
    torch.testing.assert_close(s, torch.tensor(expected, dtype=torch.float64), atol=1e-3, rtol=0)
    assert (s[:-1] - s[1:])[0] < (s[:-1] - s[1:])[-1]  # small steps near noise, large near data
    assert int(shifted.previous_timestep(shifted.timesteps[-1])) == -1


def test_heun_is_second_order_on_a_curved_field():
    """A velocity field whose flow is not straight: v(x, s) = x + s (an exact solution from s = 1 to 0).
    Euler's error halves with twice the steps (first order), Heun's quarters (second order)."""

    def solve(solver, n):
        sched = E3FlowMatchScheduler(num_train_timesteps=1000, prediction_type="velocity", solver=solver,
                                     center_of_mass=False)  # fmt: skip
        sched.set_timesteps(n)
        x = torch.full((1, 3), 1.0, dtype=torch.float64)
        calls = 0
        for t in sched.timesteps:
            s = float(sched.sigmas[int(t)])
            x = sched.step(x + s, t, x).prev_sample
            calls += 1
        return x[0, 0].item(), calls

    # dx/ds = x + s, x(1) = 1  =>  x(s) = 3 e^(s - 1) - s - 1, x(0) = 3 / e - 1
    exact = 3 / math.e - 1
    e_euler = [abs(solve("euler", n)[0] - exact) for n in (20, 40)]
    e_heun = [abs(solve("heun", n)[0] - exact) for n in (20, 40)]
    assert 1.7 < e_euler[0] / e_euler[1] < 2.3
    assert e_heun[1] < e_euler[1] / 5 and e_heun[0] / e_heun[1] > 2.5  # second order but for its Euler end
    assert solve("heun", 20)[1] == 39 and solve("euler", 20)[1] == 20  # 2n - 1 model calls


def test_sampler_is_e3_equivariant_and_keeps_zero_com():
    sched = E3FlowMatchScheduler(num_train_timesteps=50, prediction_type="sample")
    sched.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    x = sched.sample_prior((12, 3), batch=BATCH, generator=g, dtype=torch.float64)
    target = euclidean.remove_mean(torch.randn(12, 3, generator=g, dtype=torch.float64), BATCH)

    def run(x, target, batch):
        for t in sched.timesteps:  # a "model" that pulls halfway towards the target each step
            x = sched.step(0.5 * (x + target), t, x, batch=batch).prev_sample
        return x

    out = run(x, target, BATCH)
    assert euclidean.center_of_mass(out, BATCH).abs().max() < 1e-12
    errs = assert_equivariant(run, [x, target, BATCH], ["node_vector", "node_vector", "node_index"],
                              ["node_vector"])  # fmt: skip
    assert max(errs.values()) < 1e-12


def test_config_and_bad_input():
    sched = build("scheduler", "e3_flow")
    assert isinstance(sched, E3FlowMatchScheduler) and sched.config.solver == "euler"
    for kwargs, match in (({"prediction_type": "epsilon"}, "prediction_type"),
                          ({"solver": "rk4"}, "solver"), ({"time_shift": 0.0}, "time_shift"),
                          ({"num_train_timesteps": 0}, "num_train_timesteps")):  # fmt: skip
        with pytest.raises(GeodiffValueError, match=match):
            E3FlowMatchScheduler(**kwargs)
    with pytest.raises(GeodiffValueError, match="num_inference_steps"):
        sched.set_timesteps(0)


def test_ot_alignment_is_an_equivariant_rigid_reordering():
    g = torch.Generator().manual_seed(0)
    x = euclidean.remove_mean(torch.randn(12, 3, generator=g, dtype=torch.float64), BATCH)
    noise = euclidean.remove_mean(torch.randn(12, 3, generator=g, dtype=torch.float64), BATCH)
    aligned = euclidean.ot_align(x, noise, BATCH)
    for k in range(3):  # per graph: the same points (a permutation), rigidly rotated, and closer to x
        a, b, n = aligned[BATCH == k], x[BATCH == k], noise[BATCH == k]
        torch.testing.assert_close(torch.sort(torch.linalg.norm(a, dim=-1)).values,
                                   torch.sort(torch.linalg.norm(n, dim=-1)).values)  # fmt: skip
        assert float((a - b).pow(2).sum()) <= float((n - b).pow(2).sum()) + 1e-12
        torch.testing.assert_close(torch.cdist(a, a).sum(), torch.cdist(n, n).sum())  # rigid
    assert euclidean.center_of_mass(aligned, BATCH).abs().max() < 1e-12
    errs = assert_equivariant(lambda x, n, b: euclidean.ot_align(x, n, b), [x, noise, BATCH],
                              ["node_vector", "node_vector", "node_index"], ["node_vector"])  # fmt: skip
    assert max(errs.values()) < 1e-10
