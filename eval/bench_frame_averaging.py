"""Frame averaging benchmark: what exact equivariance by frame averaging costs, against the plain backbone it
wraps (the baseline, run in the same process) and GeoTDM's equivariant EGTN.

    .venv/bin/python eval/bench_frame_averaging.py [--systems 64] [--json eval/results/bench_fa.json]

1. Training throughput (systems/s, forward + backward + Adam step of the GeoTDM loss) of the charged-particle
   denoiser at its CPU size (64 channels, 3 layers, 1-layer learnable prior; 5 particles x 30 frames) and
   of the ETH-UCY one (2D, scenes of up to 8 pedestrians x 20 frames), for: plain, plain + frame averaging
   over E(d) (2^d frames) and SE(d) (2^(d-1)), EGTN. Ratios are against plain.
2. The cost of building the frames alone (``pca_frames``: covariance, eigen-decomposition, sign frames) per
   batch, and the frame counts of generic and degenerate systems (two points, one point, a regular
   octahedron).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from geodiff.data.nbody import simulate
from geodiff.data.trajectories import TrajectorySample, collate_trajectories, fully_connected
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.nn.frame_averaging import pca_frames
from geodiff.schedulers import E3DDPMScheduler
from geodiff.training.trajectories import trajectory_loss


def charged(num: int, frames: int = 30):
    sim = simulate(num, "charged", seed=0)
    out = []
    for s in range(num):
        q = torch.from_numpy(sim["charges"][s]).float()
        ei = fully_connected(len(q))
        x = torch.from_numpy(sim["loc"][s, :frames]).float().transpose(0, 1)
        out.append(TrajectorySample(x, q[:, None], ei, (q[ei[0]] * q[ei[1]])[:, None]))
    return collate_trajectories(out)


def pedestrians(num: int, frames: int = 20):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(num):
        n = int(torch.randint(2, 9, (), generator=g))
        start = 5 * torch.randn(n, 1, 2, generator=g)
        walk = torch.cumsum(0.4 * torch.randn(n, frames, 2, generator=g), 1)
        ei = fully_connected(n)
        out.append(TrajectorySample(start + walk, torch.ones(n, 1), ei, torch.ones(ei.shape[1], 1)))
    return collate_trajectories(out)


def train_rate(model, batch, sched, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()
        loss = trajectory_loss(model, batch, sched, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch.num_graphs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    sched = E3DDPMScheduler(num_train_timesteps=1000, center_of_mass=False, prediction_type="sample")
    report: dict = {"threads": torch.get_num_threads(), "systems": a.systems, "steps": a.steps}
    cases = {"charged (3D)": (charged(a.systems), dict(dim=3, num_cond=10, num_target=20)),
             "pedestrians (2D)": (pedestrians(a.systems),
                                  dict(dim=2, num_cond=8, num_target=12))}  # fmt: skip
    for name, (batch, shape) in cases.items():
        rows = {}
        for label, opts in (("plain", dict(backbone="plain")),
                            ("plain + FA E(d)", dict(backbone="plain", frame_averaging="E")),
                            ("plain + FA SE(d)", dict(backbone="plain", frame_averaging="SE")),
                            ("EGTN", dict(backbone="egtn"))):  # fmt: skip
            torch.manual_seed(0)
            m = GeoTDMDenoiser(hidden=64, num_layers=3, prior_layers=1, prediction="sample", **shape, **opts)
            rows[label] = train_rate(m, batch, sched, a.steps)
        base = rows["plain"]
        print(f"== {name}: training systems/s, batch {a.systems}, {torch.get_num_threads()} threads")
        for label, rate in rows.items():
            print(f"  {label:<18} {rate:8.1f} systems/s   {rate / base:5.2f}x plain")
        x = batch.x
        t0 = time.perf_counter()
        for _ in range(20):
            fr = pca_frames(x, batch.batch, batch.num_graphs, "E")
        frames_ms = (time.perf_counter() - t0) / 20 * 1e3
        print(f"  pca_frames alone: {frames_ms:.2f} ms per batch ({fr.size} frames, "
              f"{int(fr.exact.sum())}/{batch.num_graphs} systems exact)")  # fmt: skip
        report[name] = {"systems_per_s": rows, "ratio_vs_plain": {k: v / base for k, v in rows.items()},
                        "pca_frames_ms": frames_ms, "frames": fr.size}  # fmt: skip
    sizes = {}
    octa = torch.cat([torch.eye(3), -torch.eye(3)])
    for label, pts in (("generic 3D", torch.randn(6, 3) * torch.tensor([3.0, 1.5, 0.5])),
                       ("two points", torch.tensor([[0.0, 0, -1], [0, 0, 1]])),
                       ("one point", torch.zeros(1, 3)), ("regular octahedron", octa)):  # fmt: skip
        sizes[label] = {g: pca_frames(pts, group=g).size for g in ("E", "SE")}
    print("frame counts (E, SE):", {k: (v["E"], v["SE"]) for k, v in sizes.items()})
    report["frame_counts"] = sizes
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
