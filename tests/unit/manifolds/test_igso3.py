"""IGSO(3): density, closed form vs series, normalisation, score, sampling histogram."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from geodiff.manifolds import igso3, so3


@pytest.mark.parametrize("sigma", [1e-3, 0.01, 0.1, 0.5, 1.0, 1.5, 2.0])
def test_angle_density_is_normalised(sigma):
    grid = torch.linspace(0, min(math.pi, 12 * sigma), 200001, dtype=torch.float64)
    p = igso3.igso3_angle_density(grid, sigma)
    assert float(torch.trapezoid(p, grid)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0, 1.4])
def test_closed_form_agrees_with_converged_series(sigma):
    # the bulk (f > e^-10), where the truncated series has no cancellation trouble
    w = torch.linspace(1e-3, min(2.0, 4 * sigma), 50, dtype=torch.float64)
    a = igso3.igso3_log_density(w, sigma, method="series", l_max=400)
    b = igso3.igso3_log_density(w, sigma, method="closed_form")
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    da = igso3.igso3_dlog_density(w, sigma, method="series")
    db = igso3.igso3_dlog_density(w, sigma, method="closed_form")
    torch.testing.assert_close(da, db, atol=1e-7, rtol=1e-9)


def test_series_fails_for_small_sigma_where_closed_form_holds():
    """The pitfall users report: a truncated series (2,000 terms) does not converge at sigma = 0.001."""
    sigma = 0.001
    w = torch.tensor([0.0005, 0.001, 0.002], dtype=torch.float64)
    closed = igso3.igso3_density(w, sigma)
    series = igso3.igso3_density(w, sigma, method="series", l_max=2000)
    assert ((series - closed).abs() / closed).max() > 0.1
    # the small-sigma limit is the Gaussian in the tangent space: f(w) ~ exp(-w^2 / (2 sigma^2)) near 0
    ratio = closed / igso3.igso3_density(torch.zeros(1, dtype=torch.float64), sigma)
    torch.testing.assert_close(ratio, torch.exp(-(w**2) / (2 * sigma**2)), rtol=1e-3, atol=0)


def test_large_sigma_tends_to_uniform():
    w = torch.linspace(0.1, 3.0, 20, dtype=torch.float64)
    torch.testing.assert_close(
        igso3.igso3_density(w, 5.0), torch.ones(20, dtype=torch.float64), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("sigma", [1e-3, 0.05, 0.7, 1.8])
def test_score_matches_finite_differences(sigma):
    w = torch.linspace(0.05, 3.0, 30, dtype=torch.float64) * min(1.0, 4 * sigma)
    h = 1e-6 * min(1.0, sigma)
    fd = (igso3.igso3_log_density(w + h, sigma) - igso3.igso3_log_density(w - h, sigma)) / (2 * h)
    an = igso3.igso3_dlog_density(w, sigma)
    torch.testing.assert_close(an, fd, rtol=1e-5, atol=1e-5 / sigma)


def test_score_vector_is_radial_and_zero_at_identity():
    v = torch.randn(10, 3, dtype=torch.float64) * 0.3
    s = igso3.igso3_score(v, 0.2)
    cos = (s * v).sum(-1) / (s.norm(dim=-1) * v.norm(dim=-1))
    torch.testing.assert_close(cos, -torch.ones(10, dtype=torch.float64))
    assert igso3.igso3_score(torch.zeros(1, 3, dtype=torch.float64), 0.2).abs().max() == 0
    # small sigma: the score is the Gaussian one, -v / sigma^2
    v = torch.tensor([[1e-3, 2e-3, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(igso3.igso3_score(v, 0.01), -v / 0.01**2, rtol=1e-3, atol=0)


@pytest.mark.parametrize("sigma", [1e-3, 0.02, 0.3, 1.0, 2.0])
def test_sampled_angles_match_the_density(sigma):
    ang = igso3.igso3_sample_angle(sigma, (20000,), torch.Generator().manual_seed(0), torch.float64).numpy()
    grid = np.linspace(0, min(math.pi, 12 * sigma), 40001)
    dens = igso3.igso3_angle_density(torch.from_numpy(grid), sigma).numpy()
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    assert stats.kstest(ang, lambda w: np.interp(w, grid, cdf)).pvalue > 0.001
    # histogram check against the density as well (20 bins, chi-square)
    edges = np.linspace(0, grid[-1], 21)
    counts, _ = np.histogram(ang, edges)
    expected = np.diff(np.interp(edges, grid, cdf)) * len(ang)
    keep = expected > 5
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 0.001


def test_per_sample_sigmas_and_rotation_vectors():
    sig = torch.tensor([0.01, 0.5, 0.01, 1.5])
    v = igso3.igso3_sample(sig.repeat(5000), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert v.shape == (20000, 3)
    ang = v.norm(dim=-1).view(5000, 4)
    assert float(ang[:, 0].mean()) == pytest.approx(0.01 * 2 * math.sqrt(2 / math.pi), rel=0.03)
    assert float(ang[:, 1].mean()) > 5 * float(ang[:, 0].mean())
    axis = v / v.norm(dim=-1, keepdim=True)
    assert axis.mean(0).abs().max() < 0.03  # isotropic axes
    R = so3.exp(v)
    torch.testing.assert_close(so3.angle(R), v.norm(dim=-1), atol=1e-9, rtol=0)


def test_bad_sigma_and_omega():
    with pytest.raises(ValueError, match="sigma"):
        igso3.igso3_density(torch.tensor([0.1]), 0.0)
    with pytest.raises(ValueError, match="omega"):
        igso3.igso3_density(torch.tensor([4.0]), 0.5)
    with pytest.raises(ValueError, match="sigma"):
        igso3.igso3_sample_angle(float("nan"), (3,))
