"""Forecast freshly simulated charged-particle systems with the shipped GeoTDM model.

    .venv/bin/python sampling/forecast_nbody.py [--ckpt checkpoints/nbody_charged_geotdm_small]
        [--systems 50] [--k 5] [--steps 100] [--seed 123] [--out samples/nbody]

Simulates new systems (NRI/EGNN protocol, a seed the model never saw), forecasts 20 frames from 10 observed
ones K times, and writes ``forecast.npz`` (pred [K, nodes, 20, 3], observed, truth, batch), ``forecast.png``
(observed / ground truth / samples of the first systems) and ``report.json`` (ADE/FDE avg and min of K, and
the constant-velocity and linear baselines on the same systems).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from geodiff.data.datamodules import systems_for_sampling
from geodiff.data.trajectories import collate_trajectories
from geodiff.io import write_json
from geodiff.metrics.trajectories import constant_velocity, displacement_errors, linear_extrapolation
from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline, plot_trajectories, save_trajectories


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="checkpoints/nbody_charged_geotdm_small")
    ap.add_argument("--systems", type=int, default=50)
    ap.add_argument("--k", type=int, default=5, help="samples per system (GeoTDM: 5)")
    ap.add_argument("--steps", type=int, default=100, help="DDPM steps (strided; the model has 1000)")
    ap.add_argument("--seed", type=int, default=123, help="simulation and sampling seed")
    ap.add_argument("--out", default="samples/nbody")
    args = ap.parse_args()

    pipe = TrajectoryDiffusionPipeline.from_pretrained(args.ckpt)
    c = pipe.model.config
    ds = systems_for_sampling(pipe.data_info, None, num_systems=args.systems, seed=args.seed)
    b = collate_trajectories(ds.samples)
    obs, truth = b.x[:, : c.num_cond], b.x[:, c.num_cond :]
    t0 = time.time()
    pred = pipe(b, num_samples=args.k, num_inference_steps=args.steps, seed=args.seed).trajectories
    seconds = time.time() - t0
    e = displacement_errors(pred, truth)
    baselines = {}
    for name, fn in (("constant_velocity", constant_velocity), ("linear", linear_extrapolation)):
        r = displacement_errors(fn(obs, c.num_target), truth)
        baselines[name] = {"ade": r["ade"], "fde": r["fde"]}
    report = {"ckpt": str(args.ckpt), "systems": ds.source, "k": args.k, "steps": args.steps,
              "seconds": seconds, **{k: e[k] for k in ("ade_avg", "fde_avg", "ade_min", "fde_min")},
              "baselines": baselines}  # fmt: skip
    out = Path(args.out)
    save_trajectories(out / "forecast.npz", pred=pred, observed=obs, truth=truth, batch=b.batch, h=b.h,
                      num_cond=c.num_cond, dataset=ds.name)  # fmt: skip
    plot_trajectories(out / "forecast.png", b, pred, c.num_cond)
    write_json(out / "report.json", report)
    print(f"{ds.source}: {args.k} forecasts each, {args.steps} steps, {seconds:.1f} s")
    print(f"  geodiff ADE/FDE avg of {args.k}: {e['ade_avg']:.4f}/{e['fde_avg']:.4f}, "
          f"min of {args.k}: {e['ade_min']:.4f}/{e['fde_min']:.4f}")  # fmt: skip
    for name, r in report["baselines"].items():
        print(f"  {name}: {r['ade']:.4f}/{r['fde']:.4f}")
    print(f"outputs: {out / 'forecast.npz'}, {out / 'forecast.png'}, {out / 'report.json'}")


if __name__ == "__main__":
    main()
