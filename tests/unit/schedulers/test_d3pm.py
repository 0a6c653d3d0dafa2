"""Categorical D3PM scheduler: common contract, closed forms against explicit matrices, statistics."""

import pytest
import torch
import torch.nn.functional as F

from geodiff.schedulers import CategoricalD3PMScheduler
from geodiff.testing import SchedulerTesterMixin

K = 5
MARGINAL = [0.5, 0.3, 0.1, 0.1, 0.0]


class _D3PMHooks(SchedulerTesterMixin):
    prior_type = "marginal"
    atol = 0.0

    def get_scheduler_config(self):
        cfg = dict(num_classes=K, num_train_timesteps=40, prior_type=self.prior_type)
        if self.prior_type == "marginal":
            cfg["prior_probs"] = MARGINAL
        return cfg

    def make_clean_sample(self, generator):
        idx = torch.randint(0, K - 1, (300,), generator=generator)
        batch = torch.arange(300) // 100  # three graphs
        return F.one_hot(idx, K).double(), {"batch": batch}

    def draw_prior(self, scheduler, x0, generator, kw):
        return scheduler.sample_prior(x0.shape[:-1], generator=generator, dtype=x0.dtype)

    def oracle_output(self, scheduler, x0, sample, t, kw):
        return 30.0 * x0  # logits of a confident, correct model


class TestD3PMMarginal(_D3PMHooks):
    scheduler_class = CategoricalD3PMScheduler


class TestD3PMUniform(_D3PMHooks):
    scheduler_class = CategoricalD3PMScheduler
    prior_type = "uniform"


class TestD3PMAbsorbing(_D3PMHooks):
    scheduler_class = CategoricalD3PMScheduler
    prior_type = "absorbing"


def _matrices(s, a):
    m = s.prior
    return a * torch.eye(K, dtype=torch.float64) + (1 - a) * m.unsqueeze(0)


@pytest.mark.parametrize("prior_type", ["uniform", "marginal", "absorbing"])
def test_closed_forms_match_explicit_transition_matrices(prior_type):
    s = CategoricalD3PMScheduler(
        num_classes=K,
        num_train_timesteps=40,
        prior_type=prior_type,
        prior_probs=MARGINAL if prior_type == "marginal" else None,
    )
    ab = s.alphas_cumprod
    # q(x_t | x_0) = x0 Qbar_t with Qbar_t the product of the one-step matrices
    qbar = torch.eye(K, dtype=torch.float64)
    for t in range(40):
        qbar = qbar @ _matrices(s, 1 - s.betas[t])
        if t in (0, 13, 39):
            x0 = torch.eye(K, dtype=torch.float64)
            torch.testing.assert_close(s.q_probs(x0, t), qbar, atol=1e-12, rtol=0)
    # posterior marginalised over predicted x0, by brute force over classes
    g = torch.Generator().manual_seed(0)
    t, tp = 20, 12
    xt = F.one_hot(torch.tensor([0, 1, 3, 4]), K).double()
    p0 = torch.softmax(torch.randn(4, K, generator=g, dtype=torch.float64), -1)
    Qstep, Qt, Qprev = _matrices(s, ab[t] / ab[tp]), _matrices(s, ab[t]), _matrices(s, ab[tp])
    want = []
    for i in range(4):
        j = int(xt[i].argmax())
        acc = torch.zeros(K, dtype=torch.float64)
        for k in range(K):
            if Qt[k, j] > 0:
                acc += p0[i, k] * Qstep[:, j] * Qprev[k] / Qt[k, j]
        want.append(acc / acc.sum())
    torch.testing.assert_close(s.posterior_probs(xt, p0, t, tp), torch.stack(want), atol=1e-12, rtol=0)


@pytest.mark.parametrize("prior_type", ["uniform", "marginal", "absorbing"])
def test_marginals_sum_to_one_and_reach_the_prior(prior_type):
    s = CategoricalD3PMScheduler(
        num_classes=K,
        num_train_timesteps=500,
        prior_type=prior_type,
        prior_probs=MARGINAL if prior_type == "marginal" else None,
    )
    x0 = torch.eye(K, dtype=torch.float64)
    for t in (0, 100, 250, 499):
        q = s.q_probs(x0, t)
        torch.testing.assert_close(q.sum(-1), torch.ones(K, dtype=torch.float64))
        assert bool((q >= 0).all())
    torch.testing.assert_close(s.q_probs(x0, 499), s.prior.expand(K, K), atol=1e-6, rtol=0)


def test_noised_class_frequencies_match_q():
    s = CategoricalD3PMScheduler(num_classes=K, num_train_timesteps=100, prior_probs=MARGINAL)
    g = torch.Generator().manual_seed(0)
    n = 40000
    x0 = F.one_hot(torch.full((n,), 2), K).double()
    xt = s.add_noise(x0, 50, generator=g)
    freq = xt.mean(0)
    want = s.q_probs(x0[:1], 50)[0]
    assert (freq - want).abs().max() < 4 * (0.25 / n) ** 0.5
    prior = s.sample_prior((n,), generator=g, dtype=torch.float64).mean(0)
    assert (prior - s.prior).abs().max() < 4 * (0.25 / n) ** 0.5


def test_per_graph_timesteps_and_edge_tensors():
    s = CategoricalD3PMScheduler(num_classes=K, num_train_timesteps=100, prior_type="uniform")
    edges = F.one_hot(torch.randint(0, K, (6, 4, 4)), K).double()  # dense [B, N, N, K] bond tensor
    t = torch.tensor([0, 10, 20, 50, 80, 99])
    q = s.q_probs(edges, t)
    for b in range(6):
        torch.testing.assert_close(q[b], s.q_probs(edges[b], int(t[b])))
    out = s.step(
        torch.randn(6, 4, 4, K, dtype=torch.float64), t, edges, generator=torch.Generator().manual_seed(0)
    )
    assert out.prev_sample.shape == edges.shape
    torch.testing.assert_close(out.prev_sample.sum(-1), torch.ones(6, 4, 4, dtype=torch.float64))


def test_deterministic_step_takes_the_most_probable_class():
    s = CategoricalD3PMScheduler(num_classes=K, num_train_timesteps=100, prior_probs=MARGINAL)
    s.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    xt = s.sample_prior((64,), generator=g, dtype=torch.float64)
    logits = torch.randn(64, K, generator=g, dtype=torch.float64)
    for t in (s.timesteps[0], s.timesteps[-1]):  # a middle step and the last one (to x0)
        out = s.step(logits, t, xt, deterministic=True)
        post = s.posterior_probs(xt, torch.softmax(logits, -1), t)
        torch.testing.assert_close(out.prev_sample, F.one_hot(post.argmax(-1), K).double())
    # on the last step the posterior is p(x0 | x_t): argmax of the model's probabilities where x_t allows it
    last = s.step(logits, s.timesteps[-1], xt, deterministic=True).prev_sample
    assert bool((last.sum(-1) == 1).all())
    assert s.step(logits[:0], s.timesteps[-1], xt[:0], deterministic=True).prev_sample.shape == (0, K)


def test_bad_prior_arguments():
    with pytest.raises(ValueError, match="prior_probs"):
        CategoricalD3PMScheduler(num_classes=3, prior_type="marginal")
    with pytest.raises(ValueError, match="prior_probs"):
        CategoricalD3PMScheduler(num_classes=2, prior_type="marginal", prior_probs=[-1.0, 2.0])
    s = CategoricalD3PMScheduler(num_classes=3, prior_type="uniform")
    with pytest.raises(ValueError, match="num_classes"):
        s.q_probs(torch.zeros(4, 5), 1)
