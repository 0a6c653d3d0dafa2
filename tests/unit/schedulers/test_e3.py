"""E(3) DDPM / DDIM schedulers: common contract, noise schedules, zero CoM, equivariance, statistics."""

import math

import pytest
import torch
from scipy import stats

from geodiff.manifolds import euclidean
from geodiff.schedulers import E3DDIMScheduler, E3DDPMScheduler, make_alphas_cumprod
from geodiff.testing import SchedulerTesterMixin, assert_equivariant

BATCH = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])


class _E3Hooks(SchedulerTesterMixin):
    prediction_type = "epsilon"

    def get_scheduler_config(self):
        return dict(num_train_timesteps=60, beta_schedule="cosine", prediction_type=self.prediction_type)

    def make_clean_sample(self, generator):
        x0 = euclidean.remove_mean(
            torch.randn(len(BATCH), 3, generator=generator, dtype=torch.float64), BATCH
        )
        return x0, {"batch": BATCH}

    def draw_prior(self, scheduler, x0, generator, kw):
        return scheduler.sample_prior(x0.shape, batch=kw["batch"], generator=generator, dtype=x0.dtype)

    def oracle_output(self, scheduler, x0, sample, t, kw):
        abar = scheduler._abar(torch.as_tensor(t))
        eps = (sample - abar.sqrt() * x0) / (1 - abar).sqrt()
        kind = scheduler.config.prediction_type
        if kind == "epsilon":
            return eps
        if kind == "sample":
            return x0.clone()
        return scheduler.get_velocity(x0, eps, t)


class TestDDPMEpsilon(_E3Hooks):
    scheduler_class = E3DDPMScheduler


class TestDDPMSample(_E3Hooks):
    scheduler_class = E3DDPMScheduler
    prediction_type = "sample"


class TestDDPMVelocity(_E3Hooks):
    scheduler_class = E3DDPMScheduler
    prediction_type = "v_prediction"


class TestDDIMEpsilon(_E3Hooks):
    scheduler_class = E3DDIMScheduler
    atol = 1e-7  # eps -> x0 divides by sqrt(abar_T) at the first step

    def get_scheduler_config(self):
        return {**super().get_scheduler_config(), "eta": 1.0}


class TestDDIMVelocity(_E3Hooks):
    scheduler_class = E3DDIMScheduler
    prediction_type = "v_prediction"

    def get_scheduler_config(self):
        return {**super().get_scheduler_config(), "eta": 0.5}


# ------------------------------------------------------------------------------------ noise schedules
@pytest.mark.parametrize("name", ["linear", "cosine", "polynomial", "adaptive_cosine"])
def test_schedules_are_monotone_and_reach_noise(name):
    ac = make_alphas_cumprod(name, 500, nu=2.0)
    assert ac.shape == (500,)
    assert bool((ac[1:] <= ac[:-1]).all())
    assert float(ac[0]) > 0.999 and float(ac[-1]) < 0.01


def test_cosine_matches_closed_form():
    T, s = 500, 0.008
    ac = make_alphas_cumprod("cosine", T, cosine_s=s)

    def f(tau):
        return math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 100, 250, 400):
        assert ac[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)


def test_adaptive_cosine_nu_one_is_cosine_and_nu_two_is_cleaner():
    c = make_alphas_cumprod("cosine", 200)
    torch.testing.assert_close(make_alphas_cumprod("adaptive_cosine", 200, nu=1.0), c)
    assert bool((make_alphas_cumprod("adaptive_cosine", 200, nu=2.0)[:150] >= c[:150]).all())


def test_polynomial_matches_edm_form():
    T, p = 1000, 1e-4
    ac = make_alphas_cumprod("polynomial", T, power=2.0, precision=p)
    tau = 0.5
    assert ac[T // 2 - 1].item() == pytest.approx((1 - 2 * p) * (1 - tau**2) ** 2 + p, rel=1e-9)
    # the last step ratio is clipped at 0.001, so abar_T is p plus a few 1e-9
    assert ac[-1].item() == pytest.approx(p, abs=1e-8)


def test_linear_betas():
    s = E3DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    torch.testing.assert_close(s.betas, torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64))


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="beta_schedule"):
        E3DDPMScheduler(beta_schedule="quadratic")
    with pytest.raises(ValueError, match="prediction_type"):
        E3DDPMScheduler(prediction_type="score")


# ------------------------------------------------------------------------------------ loss weight
def test_eqgat_loss_weight_is_clamped_snr():
    s = E3DDPMScheduler(num_train_timesteps=500)
    t = torch.arange(500)
    w = s.loss_weight(t)
    snr = s.alphas_cumprod / (1 - s.alphas_cumprod)
    torch.testing.assert_close(w, snr.clamp(0.05, 1.5))
    assert float(w.min()) == pytest.approx(0.05) and float(w.max()) == pytest.approx(1.5)


# ------------------------------------------------------------------------------- zero CoM + equivariance
@pytest.mark.parametrize("cls", [E3DDPMScheduler, E3DDIMScheduler])
def test_forward_and_reverse_keep_zero_com_per_graph(cls):
    s = cls(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64) + 5.0  # off-centre input
    noise = torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64)
    t = torch.tensor([10, 50, 99])
    xt = s.add_noise(x0, noise, t, batch=BATCH)
    assert euclidean.center_of_mass(xt, BATCH).abs().max() < 1e-12
    out = s.step(
        torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64), 40, xt, batch=BATCH, generator=g
    )
    assert euclidean.center_of_mass(out.prev_sample, BATCH).abs().max() < 1e-12
    assert euclidean.center_of_mass(out.pred_original_sample, BATCH).abs().max() < 1e-12


def test_forward_process_commutes_with_e3_and_permutations():
    s = E3DDPMScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64)
    eps = torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64)

    def forward(x, e, batch):
        return s.add_noise(x, e, torch.tensor([5, 50, 95]), batch=batch)

    # x_t lives in the zero-CoM subspace: it rotates/reflects with x0 and eps and ignores translations.
    errs = assert_equivariant(
        forward,
        [x0, eps, BATCH],
        ["node_position", "node_vector", "node_index"],
        "node_vector",
        permutations=False,  # per-graph timesteps follow graph ids, permuting nodes keeps them
    )
    assert max(errs.values()) < 1e-12
    perm_errs = assert_equivariant(
        forward,
        [x0, eps, BATCH],
        ["node_position", "node_vector", "node_index"],
        "node_vector",
        rotations=False,
        reflections=False,
        translations=False,
        permutations=True,
    )
    assert max(perm_errs.values()) < 1e-12


@pytest.mark.parametrize(("cls", "timestep"), [(E3DDIMScheduler, 30), (E3DDPMScheduler, 0)])
def test_reverse_step_is_equivariant(cls, timestep):
    """Deterministic steps (DDIM with eta = 0; DDPM's last step, which adds no noise) are E(3)-equivariant."""
    s = cls(num_train_timesteps=100)
    g = torch.Generator().manual_seed(1)
    xt = euclidean.remove_mean(torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64), BATCH)
    eps = torch.randn(len(BATCH), 3, generator=g, dtype=torch.float64)

    def step(x, e, batch):
        out = s.step(e, timestep, x, batch=batch)
        return out.prev_sample, out.pred_original_sample

    kinds = ["node_vector", "node_vector", "node_index"]
    assert_equivariant(step, [xt, eps, BATCH], kinds, ["node_vector", "node_vector"], permutations=False)
    assert_equivariant(
        step,
        [xt, eps, BATCH],
        kinds,
        ["node_vector", "node_vector"],
        rotations=False,
        reflections=False,
        translations=False,
    )


def test_padded_mask_and_node_flattened_agree():
    s = E3DDPMScheduler(num_train_timesteps=50)
    g = torch.Generator().manual_seed(0)
    sizes = [3, 5]
    x = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    eps = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    padded = s.add_noise(x, eps, torch.tensor([7, 30]), mask=mask)
    flat = s.add_noise(
        x[mask],
        eps[mask],
        torch.tensor([7, 30]),
        batch=torch.repeat_interleave(torch.arange(2), torch.tensor(sizes)),
    )
    torch.testing.assert_close(padded[mask], flat)
    assert padded[~mask].abs().max() == 0


def test_trajectory_shaped_samples_use_one_centre_over_frames():
    s = E3DDPMScheduler(num_train_timesteps=50)
    batch = torch.tensor([0, 0, 1, 1, 1])
    x = torch.randn(5, 4, 3, dtype=torch.float64)  # [nodes, frames, 3]
    y = s.project(x, batch)
    assert euclidean.center_of_mass(y, batch).abs().max() < 1e-12
    assert y[:, 0].mean(0).abs().max() > 1e-6  # not per frame: one centre over all nodes and frames


# ------------------------------------------------------------------------------------ statistics
def test_last_timestep_matches_prior_statistically():
    """x_T of any x0 is ~N(0, I) restricted to zero CoM: per-graph coordinates have variance (n-1)/n."""
    s = E3DDPMScheduler(num_train_timesteps=500)
    g = torch.Generator().manual_seed(0)
    n_graphs, n = 4000, 5
    batch = torch.arange(n_graphs).repeat_interleave(n)
    x0 = 3 * torch.randn(n_graphs * n, 3, generator=g, dtype=torch.float64)
    xt = s.add_noise(x0, torch.randn(x0.shape, generator=g, dtype=torch.float64), 499, batch=batch)
    prior = s.sample_prior(x0.shape, batch=batch, generator=g, dtype=torch.float64)
    scale = math.sqrt((n - 1) / n)
    for sample in (xt, prior):
        z = sample[::n, 0].numpy() / scale  # one coordinate of the first node of each graph
        assert stats.kstest(z, "norm").pvalue > 0.01
        assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05


def test_bad_inputs_name_the_argument():
    s = E3DDPMScheduler(num_train_timesteps=50)
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="noise"):
        s.add_noise(x, torch.zeros(5, 3), 3)
    with pytest.raises(ValueError, match="timesteps"):
        s.add_noise(x, x, 50)
    with pytest.raises(ValueError, match="batch"):
        s.add_noise(x, x, 3, batch=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="model_output"):
        s.step(torch.zeros(4, 2), 3, x)
