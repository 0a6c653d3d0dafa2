"""Trajectory pipeline: seeded reproducibility, K independent samples, DDPM/DDIM, zero CoM when
unconditional, chunking does not change results, equivariance of the whole sampler, bad input."""

import pytest
import torch

from geodiff.config import build
from geodiff.data.nbody import simulate
from geodiff.data.trajectories import TrajectorySample, collate_trajectories, fully_connected
from geodiff.errors import GeodiffValueError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline, repeat_batch
from geodiff.schedulers import E3DDIMScheduler, convert
from geodiff.training.trajectories import for_model


def batch(num=3, frames=12):
    sim = simulate(num, "charged", seed=5)
    out = []
    for s in range(num):
        q = torch.from_numpy(sim["charges"][s]).float()
        ei = fully_connected(5)
        x = torch.from_numpy(sim["loc"][s, :frames]).float().transpose(0, 1)
        out.append(TrajectorySample(x, q[:, None], ei, (q[ei[0]] * q[ei[1]])[:, None]))
    return collate_trajectories(out)


def pipe(num_cond=4, num_target=8, T=50):
    torch.manual_seed(0)
    m = GeoTDMDenoiser(hidden=16, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=num_cond,
                       num_target=num_target)  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.1)
    sched = for_model(build("scheduler", "geotdm_ddpm", [f"num_train_timesteps={T}"]), m)
    return TrajectoryDiffusionPipeline(m, sched, {})


def test_forecast_shapes_seed_and_k_samples():
    p, b = pipe(), batch()
    a = p(b, num_samples=3, num_inference_steps=10, seed=1, progress=False).trajectories
    assert a.shape == (3, 15, 8, 3) and torch.isfinite(a).all()
    torch.testing.assert_close(
        a, p(b, num_samples=3, num_inference_steps=10, seed=1, progress=False).trajectories
    )
    assert not torch.allclose(a[0], a[1])  # K samples are independent draws
    chunked = p(b, num_samples=3, num_inference_steps=10, seed=1, progress=False, batch_size=3).trajectories
    assert chunked.shape == a.shape and torch.isfinite(chunked).all()
    d = p(b, num_samples=2, num_inference_steps=10, sampler="ddim", seed=4, progress=False).trajectories
    assert torch.isfinite(d).all() and not torch.allclose(d[0], d[1])  # different x_T per sample
    torch.testing.assert_close(d, p(b, num_samples=2, num_inference_steps=10, sampler="ddim", seed=4,
                                             progress=False).trajectories)  # fmt: skip


def test_deterministic_sampler_is_e3_equivariant():
    """DDIM started at the prior mean (y_T = 0, no noise anywhere): rotating and translating the observed
    frames rotates and translates the whole forecast (float64)."""
    p, b = pipe(), batch(num=2)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    shift = torch.tensor([1.0, -2.0, 0.5])
    moved = collate_trajectories([TrajectorySample(s.x @ q.T + shift, s.h, s.edge_index, s.edge_attr)
                                  for s in _split(b)])  # fmt: skip
    p.model.double()
    run = lambda bb: _ddim_from_mean(p, bb)  # noqa: E731
    torch.testing.assert_close(run(moved), run(b) @ q.T.double() + shift.double(), atol=1e-6, rtol=1e-6)


def _split(b):
    return [TrajectorySample(b.x[b.batch == s], b.h[b.batch == s], fully_connected(5),
                             b.edge_attr[: 20]) for s in range(b.num_graphs)]  # fmt: skip


def _ddim_from_mean(p, b):
    sched = convert(p.scheduler, E3DDIMScheduler, eta=0.0)
    sched.set_timesteps(10)
    x = b.x.double()
    xc, h, ea = x[:, :4], b.h.double(), b.edge_attr.double()
    xr = p.model.prior(xc, h, b.edge_index, ea, b.batch)
    y = torch.zeros_like(xr)
    with torch.no_grad():
        for t in sched.timesteps:
            eps = p.model(xr + y, t, h, b.edge_index, ea, b.batch, x_cond=xc)["eps"]
            y = sched.step(eps, t, y).prev_sample
    return (xr + y).detach()


def test_unconditional_generation_keeps_zero_com():
    p, b = pipe(num_cond=0, num_target=10), batch(frames=10)
    g = p(b, num_samples=2, num_inference_steps=8, progress=False).trajectories
    for k in range(2):
        for s in range(3):
            assert g[k, b.batch == s].mean((0, 1)).abs().max() < 1e-5
    assert g.shape == (2, b.x.shape[0], 10, 3)


def test_repeat_batch_layout():
    b = batch(num=2)
    r = repeat_batch(b, 3)
    assert r.num_graphs == 6 and r.x.shape[0] == 30 and r.edge_index.shape[1] == 3 * b.edge_index.shape[1]
    assert int(r.edge_index.max()) == 29 and bool(
        (r.batch[r.edge_index[0]] == r.batch[r.edge_index[1]]).all()
    )


def test_bad_input():
    p, b = pipe(), batch(frames=3)
    with pytest.raises(GeodiffValueError, match="need \\[nodes, >= 4 frames, 3\\]"):
        p(b, progress=False)
    b = batch()
    b.x[0, 1, 0] = float("nan")
    with pytest.raises(GeodiffValueError, match="NaN"):
        p(b, progress=False)
    with pytest.raises(GeodiffValueError, match="num_samples"):
        p(batch(), num_samples=0, progress=False)
    with pytest.raises(GeodiffValueError, match="sampler"):
        p(batch(), sampler="euler", progress=False)
    b = batch()
    b.h = torch.ones(b.h.shape[0], 2)
    with pytest.raises(GeodiffValueError, match="node/edge features"):
        p(b, progress=False)
