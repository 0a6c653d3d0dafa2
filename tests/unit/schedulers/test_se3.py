"""SE(3) Lie-algebra diffusion (registration paper) and SO(3) x R^3 IGSO(3) diffusion (FrameDiff)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from geodiff.manifolds import igso3, se3, so3
from geodiff.schedulers import SE3DiffusionScheduler, SO3R3DiffusionScheduler
from geodiff.testing import SchedulerTesterMixin


class _PoseHooks(SchedulerTesterMixin):
    def make_clean_sample(self, generator):
        return se3.random_pose((16,), generator=generator, dtype=torch.float64), {}

    def draw_prior(self, scheduler, x0, generator, kw):
        return scheduler.sample_prior(x0.shape[:-2], generator=generator, dtype=x0.dtype)

    def oracle_output(self, scheduler, x0, sample, t, kw):
        if scheduler.config.get("prediction_type") == "left_correction":
            return x0 @ se3.inverse(sample)
        return x0.clone()


class TestSE3Sample(_PoseHooks):
    scheduler_class = SE3DiffusionScheduler
    oracle_num_steps = (None, 5)  # all 200 training steps, and the paper's 5 test steps

    def get_scheduler_config(self):
        return dict(num_train_timesteps=200, sigma_r=0.05, sigma_t=0.03)


class TestSE3LeftCorrection(TestSE3Sample):
    def get_scheduler_config(self):
        return {**super().get_scheduler_config(), "prediction_type": "left_correction"}


class TestSO3R3(_PoseHooks):
    scheduler_class = SO3R3DiffusionScheduler
    oracle_num_steps = (None, 10)
    atol = 0.0  # the last step returns the prediction itself

    def get_scheduler_config(self):
        return dict(num_train_timesteps=100, translation_scale=0.5)


# ------------------------------------------------------------------------------ SE(3): forward process
def test_se3_forward_noise_is_left_multiplied():
    """H_t = exp(xi) mean_t for any H_0: the noise acts on the left, as the paper specifies."""
    s = SE3DiffusionScheduler()
    g = torch.Generator().manual_seed(0)
    h0 = se3.random_pose((32,), generator=g, dtype=torch.float64)
    noise = torch.randn(32, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 200, (32,), generator=g)
    ht = s.add_noise(h0, noise, t)
    mean = s.add_noise(h0, torch.zeros_like(noise), t)
    abar = s.alphas_cumprod[t].unsqueeze(-1)
    xi = (1 - abar).sqrt() * s.noise_scales(torch.float64) * noise
    torch.testing.assert_close(ht, se3.exp(xi) @ mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(se3.log(ht @ se3.inverse(mean)), xi, atol=1e-10, rtol=0)
    # the mean moves along the one-parameter subgroup of H_0 toward the identity
    torch.testing.assert_close(se3.log(mean), abar.sqrt() * se3.log(h0), atol=1e-10, rtol=0)


def test_se3_last_timestep_matches_prior():
    s = SE3DiffusionScheduler()
    g = torch.Generator().manual_seed(0)
    n = 20000
    h0 = se3.random_pose((n,), generator=g, dtype=torch.float64)
    ht = s.add_noise(h0, torch.randn(n, 6, generator=g, dtype=torch.float64), 199)
    z = se3.log(ht) / s.noise_scales(torch.float64)
    for k in range(6):
        assert stats.kstest(z[:, k].numpy(), "norm").pvalue > 0.001
    prior = se3.log(s.sample_prior((n,), generator=g, dtype=torch.float64)) / s.noise_scales(torch.float64)
    assert stats.ks_2samp(prior[:, 0].numpy(), z[:, 0].numpy()).pvalue > 0.001


def test_se3_prior_without_noise_is_identity():
    s = SE3DiffusionScheduler()
    torch.testing.assert_close(s.sample_prior((3,), noise=False), se3.identity((3,)))


# ------------------------------------------------------------------------------ SO(3) x R^3
def test_so3r3_rotation_noise_follows_igso3():
    s = SO3R3DiffusionScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    n = 20000
    h0 = se3.random_pose((n,), generator=g, dtype=torch.float64)
    t = 40
    ht = s.add_noise(h0, t, generator=g)
    ang = so3.geodesic_distance(h0[..., :3, :3], ht[..., :3, :3]).numpy()
    sigma = float(s.sigmas[t])
    grid = np.linspace(0, math.pi, 20001)
    dens = igso3.igso3_angle_density(torch.from_numpy(grid), sigma).numpy()
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    assert stats.kstest(ang, lambda w: np.interp(w, grid, cdf / cdf[-1])).pvalue > 0.001


def test_so3r3_last_timestep_matches_uniform_prior():
    # linear betas 1e-4 .. 2e-2 reach noise at T = 1000 (FrameDiff's VP SDE), not at T = 100
    s = SO3R3DiffusionScheduler(num_train_timesteps=1000, translation_scale=0.5)
    g = torch.Generator().manual_seed(0)
    n = 20000
    # uniform R_0 composed with any noise stays uniform (Haar invariance): angle CDF (w - sin w)/pi
    h0 = se3.random_pose((n,), generator=g, dtype=torch.float64)
    ht = s.add_noise(h0, 999, generator=g)
    prior = s.sample_prior((n,), generator=g, dtype=torch.float64)
    for h in (ht, prior):
        ang = so3.angle(h[..., :3, :3]).numpy()
        assert stats.kstest(ang, lambda w: (w - np.sin(w)) / math.pi).pvalue > 0.001
    x = prior[..., :3, 3].numpy() * 0.5  # N(0, 1) after scaling
    assert stats.kstest(x[:, 0], "norm").pvalue > 0.001
    xt = ht[..., :3, 3].numpy() * 0.5
    assert stats.ks_2samp(xt[:, 0], x[:, 0]).pvalue > 0.001


def test_so3r3_rotation_score_points_home():
    s = SO3R3DiffusionScheduler(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    h0 = se3.random_pose((64,), generator=g, dtype=torch.float64)
    ht = s.add_noise(h0, 30, generator=g)
    score = s.rotation_score(ht, h0, 30)
    rel = so3.log(h0[..., :3, :3].transpose(-1, -2) @ ht[..., :3, :3])
    cos = (score * rel).sum(-1) / (score.norm(dim=-1) * rel.norm(dim=-1))
    torch.testing.assert_close(cos, -torch.ones(64, dtype=torch.float64), atol=1e-9, rtol=0)
    # a small step along the score raises the IGSO(3) log density
    sigma = s.sigmas[30]
    moved = ht[..., :3, :3] @ so3.exp(1e-4 * score)
    rel2 = so3.log(h0[..., :3, :3].transpose(-1, -2) @ moved)
    lp = igso3.igso3_log_density(rel.norm(dim=-1), sigma)
    lp2 = igso3.igso3_log_density(rel2.norm(dim=-1), sigma)
    assert bool((lp2 > lp).all())


@pytest.mark.parametrize("cls", [SE3DiffusionScheduler, SO3R3DiffusionScheduler])
def test_pose_shape_errors(cls):
    s = cls()
    with pytest.raises(ValueError, match="sample"):
        s.step(torch.eye(4), s.timesteps[0], torch.eye(3))
