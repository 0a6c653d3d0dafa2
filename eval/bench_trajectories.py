"""Trajectory benchmark: GeoTDM denoiser throughput, sampling time, N-body simulator throughput.

    .venv/bin/python eval/bench_trajectories.py [--hidden 64 --layers 3] [--json eval/results/x.json]

1. Denoiser training throughput (trajectories/s, forward + backward + Adam step) on charged particles,
   5 particles x 30 frames (10 observed + 20 predicted), batch 128, against a baseline run in the same
   process: the same network with the textbook EGNN edge MLP (the first layer applied to the concatenated
   [h_i, h_j, d_ij^2, e_ij] of every edge and frame, rows gathered with ``x[index]``) instead of geodiff's
   split form (node terms computed per node, then gathered with ``index_select``, whose backward is an
   ``index_add_`` rather than an accumulating ``index_put_``). Both give the same numbers (checked and
   printed).
2. Sampling time for 100 and 1000 DDPM steps (64 systems, K = 1), and their ratio.
3. Simulator throughput (simulations/s, 5,000 steps each) of the vectorised NumPy simulator against a
   loop over systems (the NRI-style one-system-at-a-time baseline) on the same seeds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from geodiff.config import build  # noqa: E402
from geodiff.data.nbody import DEFAULTS, simulate
from geodiff.data.trajectories import collate_trajectories, load_nbody_npz, save_nbody_npz
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.nn.egtn import EGNNLayer
from geodiff.nn.scatter import scatter_sum
from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline
from geodiff.training.trajectories import for_model, trajectory_loss


def _concat_forward(self: EGNNLayer, h, x, edge_index, edge_attr=None):
    """The textbook EGNN layer: phi_e's first linear layer on the concatenation, per edge and frame."""
    i, j = edge_index
    r = x[i] - x[j]
    d2 = (r * r).sum(-1, keepdim=True)
    f = x.shape[1]
    parts = [h[i], h[j], d2]
    weights = [self.edge_src.weight, self.edge_dst.weight, self.edge_d2.weight]
    if self.edge_attr is not None and edge_attr is not None:
        parts.append(edge_attr.unsqueeze(1).expand(-1, f, -1))
        weights.append(self.edge_attr.weight)
    pre = torch.nn.functional.linear(torch.cat(parts, -1), torch.cat(weights, 1), self.edge_src.bias)
    m = self.edge_out(pre)
    n = h.shape[0]
    deg = torch.bincount(i, minlength=n).clamp_min(1).to(x.dtype).view(-1, 1, 1)
    w = self.coord_mlp(m) / (1.0 + d2.clamp_min(1e-12).sqrt())
    x = x + scatter_sum(r * w, i, n) / deg
    h = h + self.node_mlp(torch.cat([self.norm(h), scatter_sum(m, i, n)], dim=-1))
    return h, x


def _train_rate(model, batch, sched, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()
        loss = trajectory_loss(model, batch, sched)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch.num_graphs / (time.perf_counter() - t0)


def _sim_loop(num: int, kind: str, seed: int) -> None:
    """One system at a time (the baseline): the same integrator on arrays of one system."""
    for s in range(num):
        simulate(1, kind, seed=seed + s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed optimiser steps per variant")
    ap.add_argument("--sims", type=int, default=200, help="simulations for the simulator benchmark")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile
    from pathlib import Path

    torch.manual_seed(0)
    sim = simulate(128, "charged", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_nbody_npz(save_nbody_npz(sim, Path(tmp) / "b.npz", "charged"), 10, 20)
    batch = collate_trajectories(ds.samples)
    model = GeoTDMDenoiser(hidden=args.hidden, num_layers=args.layers, prior_layers=1)
    sched = for_model(build("scheduler", "geotdm_ddpm"), model)
    report: dict = {"threads": torch.get_num_threads(), "hidden": args.hidden, "layers": args.layers}

    # 1. training throughput, split vs concatenated edge MLP (same weights, same outputs)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():  # non-zero everywhere so the comparison exercises every path
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        ref_args = (batch.x[:, 10:], torch.full((128,), 500), batch.h, batch.edge_index, batch.edge_attr,
                    batch.batch)  # fmt: skip
        ours = model(*ref_args, x_cond=batch.x[:, :10])["eps"]
        EGNNLayer.forward, original = _concat_forward, EGNNLayer.forward
        theirs = model(*ref_args, x_cond=batch.x[:, :10])["eps"]
        EGNNLayer.forward = original
    diff = float((ours - theirs).abs().max())
    base = _train_rate_patched(model, batch, sched, args.steps)
    fast = _train_rate(model, batch, sched, args.steps)
    report["train"] = {"geodiff_traj_per_s": fast, "baseline_traj_per_s": base, "speedup": fast / base,
                       "max_abs_output_difference": diff}  # fmt: skip
    print(f"denoiser fwd+bwd+Adam, 5 particles x 30 frames, batch 128 ({torch.get_num_threads()} threads):")
    print(f"  geodiff (split edge MLP)   {fast:8.1f} trajectories/s")
    print(f"  baseline (concat edge MLP) {base:8.1f} trajectories/s   ratio {fast / base:.2f}x  "
          f"(outputs agree to {diff:.1e})")  # fmt: skip

    # 2. sampling time, 100 vs 1000 steps
    pipe = TrajectoryDiffusionPipeline(model, sched, {})
    sub = collate_trajectories(ds.samples[:64])
    times = {}
    for steps in (100, 1000):
        t0 = time.perf_counter()
        pipe(sub, num_samples=1, num_inference_steps=steps, progress=False)
        times[steps] = time.perf_counter() - t0
    report["sampling_s"] = {"systems": 64, "steps_100": times[100], "steps_1000": times[1000],
                            "ratio": times[1000] / times[100]}  # fmt: skip
    print(f"sampling 64 systems: 100 steps {times[100]:.2f} s, 1000 steps {times[1000]:.2f} s "
          f"({times[1000] / times[100]:.1f}x)")  # fmt: skip

    # 3. simulator throughput, vectorised vs one system at a time
    n = args.sims
    t0 = time.perf_counter()
    simulate(n, "charged", seed=0)
    vec = n / (time.perf_counter() - t0)
    m = max(1, n // 10)
    t0 = time.perf_counter()
    _sim_loop(m, "charged", 0)
    loop = m / (time.perf_counter() - t0)
    report["simulator"] = {"vectorised_sims_per_s": vec, "loop_sims_per_s": loop, "speedup": vec / loop,
                           "steps": DEFAULTS["charged"].num_steps}  # fmt: skip
    print(f"charged simulator ({DEFAULTS['charged'].num_steps} steps): vectorised {vec:.1f} sims/s, "
          f"one at a time {loop:.1f} sims/s ({vec / loop:.1f}x)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"JSON {args.json}")
    np.testing.assert_array_less(diff, 1e-3)


def _train_rate_patched(model, batch, sched, steps):
    EGNNLayer.forward, original = _concat_forward, EGNNLayer.forward
    try:
        return _train_rate(model, batch, sched, steps)
    finally:
        EGNNLayer.forward = original


if __name__ == "__main__":
    main()
