"""Discrete flow matching scheduler: the common contract, the mixture path, and the sampler's marginals
(with the exact data posterior of a toy distribution, every step of the chain has the path's marginals, with
and without the corrector), bad input."""

import pytest
import torch
import torch.nn.functional as F

from geodiff.errors import GeodiffValueError
from geodiff.schedulers import CategoricalFlowMatchScheduler
from geodiff.testing import SchedulerTesterMixin

K = 5
MARGINAL = [0.5, 0.3, 0.1, 0.1, 0.0]


class _FlowHooks(SchedulerTesterMixin):
    scheduler_class = CategoricalFlowMatchScheduler
    prior_type = "marginal"
    eta = 0.0
    atol = 0.0

    def get_scheduler_config(self):
        cfg = dict(num_classes=K, num_train_timesteps=40, prior_type=self.prior_type, eta=self.eta)
        if self.prior_type == "marginal":
            cfg["prior_probs"] = MARGINAL
        return cfg

    def make_clean_sample(self, generator):
        idx = torch.randint(0, K - 1, (300,), generator=generator)
        return F.one_hot(idx, K).double(), {"batch": torch.arange(300) // 100}

    def draw_prior(self, scheduler, x0, generator, kw):
        return scheduler.sample_prior(x0.shape[:-1], generator=generator, dtype=x0.dtype)

    def oracle_output(self, scheduler, x0, sample, t, kw):
        return 30.0 * x0  # logits of a confident, correct model

    def test_alphas_cumprod_monotone(self):  # the path reaches the source exactly: abar_T = 0
        sched = self.make_scheduler()
        ac = sched.alphas_cumprod
        assert ac.dtype == torch.float64 and bool((ac[1:] < ac[:-1]).all()) and float(ac[-1]) == 0.0
        torch.testing.assert_close(ac, 1 - sched.sigmas)


class TestFlowMarginal(_FlowHooks):
    pass


class TestFlowUniform(_FlowHooks):
    prior_type = "uniform"


class TestFlowAbsorbing(_FlowHooks):
    prior_type = "absorbing"


class TestFlowMarginalCorrector(_FlowHooks):
    eta = 1.0


DATA = torch.tensor([0.6, 0.25, 0.1, 0.05, 0.0], dtype=torch.float64)


def exact_posterior(sched, x, t):
    """p(x_data = k | x_s) for data drawn from DATA: DATA[k] ((1 - s) [x_s = k] + s m[x_s]), normalised."""
    s = sched.sigmas[int(t)]
    m_x = (x * sched.prior).sum(-1, keepdim=True)
    post = DATA * ((1 - s) * x + s * m_x)
    return post / post.sum(-1, keepdim=True)


@pytest.mark.parametrize(("prior_type", "eta"), [("uniform", 0.0), ("marginal", 0.0), ("absorbing", 0.0),
                                                 ("uniform", 0.5), ("marginal", 0.5)])  # fmt: skip
def test_chain_keeps_the_paths_marginals(prior_type, eta):
    cfg = {"prior_probs": MARGINAL} if prior_type == "marginal" else {}
    sched = CategoricalFlowMatchScheduler(num_classes=K, num_train_timesteps=100, prior_type=prior_type,
                                          eta=eta, **cfg)  # fmt: skip
    sched.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    n = 20_000
    x = sched.sample_prior((n,), generator=g, dtype=torch.float64)
    tol = 4 * (0.25 / n) ** 0.5 + 2e-3
    for t in sched.timesteps:
        x = sched.step(exact_posterior(sched, x, t), t, x, generator=g, output_type="probs").prev_sample
        s_next = float(sched._sigma(sched.previous_timestep(t)))
        expected = (1 - s_next) * DATA + s_next * sched.prior
        assert (x.mean(0) - expected).abs().max() < tol, (float(s_next), x.mean(0), expected)
    assert float(x.mean(0)[-1]) == 0.0  # a class the data never has is never produced


def test_jump_probability_and_last_step():
    sched = CategoricalFlowMatchScheduler(num_classes=3, num_train_timesteps=10, prior_type="uniform")
    sched.set_timesteps(2)  # s = 1 -> 0.5 -> 0
    x = F.one_hot(torch.tensor([0]), 3).double()
    p = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    first = sched.transition_probs(x, p, sched.timesteps[0])
    torch.testing.assert_close(first, torch.tensor([[0.5 + 0.5 * 0.2, 0.25, 0.15]], dtype=torch.float64))
    torch.testing.assert_close(sched.transition_probs(x, p, sched.timesteps[1]), p)  # s' = 0: a draw from p
    det = sched.step(p.log(), sched.timesteps[1], x, deterministic=True).prev_sample
    assert det.argmax(-1).tolist() == [1]


def test_bad_input():
    for kwargs, match in (({"prior_type": "marginal"}, "prior_probs"),
                          ({"prior_type": "gaussian"}, "prior_type"), ({"eta": -1.0}, "eta"),
                          ({"time_shift": 0.0}, "time_shift"),
                          ({"num_train_timesteps": 0}, "num_train_timesteps")):  # fmt: skip
        with pytest.raises(GeodiffValueError, match=match):
            CategoricalFlowMatchScheduler(num_classes=K, **{"prior_type": "uniform", **kwargs})
    sched = CategoricalFlowMatchScheduler(num_classes=K, prior_type="uniform")
    with pytest.raises(GeodiffValueError, match="num_classes"):
        sched.step(torch.zeros(3, K + 1), 5, torch.zeros(3, K + 1))
    with pytest.raises(GeodiffValueError, match="num_inference_steps"):
        sched.set_timesteps(1001)
