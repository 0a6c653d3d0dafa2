"""Slow: the SO(3) geodesic random walk of SO3R3DiffusionScheduler reproduces the IGSO(3) marginals.

Starting from the true marginal at T and stepping all 1,000 reverse steps with an oracle R0, the angle
between R_t and R_0 must follow IGSO(3)(sigma_t) at every checkpoint (Euler-Maruyama error is small at
1,000 steps; with 100 steps it visibly widens the small-sigma marginals).
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from geodiff.manifolds import igso3, se3, so3
from geodiff.schedulers import SO3R3DiffusionScheduler


@pytest.mark.slow
def test_reverse_walk_tracks_igso3_marginals():
    s = SO3R3DiffusionScheduler(num_train_timesteps=1000)
    n = 4000
    h0 = se3.random_pose((n,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    h = s.add_noise(h0, 999, generator=g)
    checked = 0
    for t in s.timesteps:
        prev = int(s.previous_timestep(t))
        h = s.step(h0, t, h, generator=g).prev_sample
        if prev in (499, 99, 9):
            ang = so3.geodesic_distance(h[..., :3, :3], h0[..., :3, :3]).numpy()
            sigma = float(s.sigmas[prev])
            grid = np.linspace(0, min(math.pi, 12 * sigma), 20001)
            dens = igso3.igso3_angle_density(torch.from_numpy(grid), sigma).numpy()
            cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
            cdf /= cdf[-1]
            ks = stats.kstest(ang, lambda w, x=grid, y=cdf: np.interp(w, x, y))
            assert ks.statistic < 0.03, f"t={prev}: KS statistic {ks.statistic:.3f} (p={ks.pvalue:.3g})"
            checked += 1
    assert checked == 3
