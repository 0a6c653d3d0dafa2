"""GeoTDM's reference sampler against geodiff's default, on the same model and the same systems.

    .venv/bin/python eval/fidelity_geotdm.py --ckpt checkpoints/nbody_charged_geotdm_small --systems 100 \
        --steps 100 --json eval/results/fidelity_geotdm_charged_steps100.json

Runs ``sampler=ddpm`` with each of: geodiff's default (``fixed_small`` posterior variance, the T-step schedule
strided to ``--steps``), the reference's FIXED_LARGE variance (beta_t) on the same strided grid, and, when
``--steps`` is below T, the reference's rescaled schedule (a new ``steps``-step linear schedule with the
betas scaled by T / steps, the denoiser fed t in 0 .. steps - 1; hanjq17/GeoTDM ``diffusion/GeoTDM.py``
``get_named_beta_schedule`` and ``experiments/nbody_sampling.py``). Every variant starts from the same seed
on the same systems; min of K is reported per node (geodiff's default) and per system (the reference's),
with one standard error over the systems and each variant's paired difference from the first one.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from geodiff.data.datamodules import systems_for_sampling
from geodiff.data.trajectories import collate_trajectories
from geodiff.io import device_description, write_json
from geodiff.metrics.trajectories import displacement_errors, item_errors
from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline


def _se(x: torch.Tensor) -> float:
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="checkpoints/nbody_charged_geotdm_small")
    ap.add_argument("--data", default=None, help="systems (default: freshly simulated N-body systems)")
    ap.add_argument("--systems", type=int, default=100)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="default,fixed_large,rescaled_fixed_large")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = TrajectoryDiffusionPipeline.from_pretrained(args.ckpt)
    T = pipe.scheduler.config.num_train_timesteps
    ds = systems_for_sampling(pipe.data_info, args.data, "test", args.systems, args.seed)
    b = collate_trajectories(ds.samples)
    c = pipe.model.config
    truth = b.x[:, c.num_cond : c.num_cond + c.num_target]
    variants = {
        "default": {"variance_type": None, "schedule": "strided"},
        "fixed_large": {"variance_type": "fixed_large", "schedule": "strided"},
        "rescaled_fixed_large": {"variance_type": "fixed_large", "schedule": "rescaled"},
        "rescaled": {"variance_type": None, "schedule": "rescaled"},
    }
    rows, per_system = {}, {}
    for name in args.variants.split(","):
        kw = variants[name]
        if kw["schedule"] == "rescaled" and args.steps >= T:
            continue  # the same schedule as the default at T steps
        t0 = time.perf_counter()
        out = pipe(b, args.k, args.steps, seed=args.seed, progress=False, **kw)
        sec = time.perf_counter() - t0
        pred = out.trajectories
        per_system[name] = item_errors(pred, truth, b.batch, over="system")  # [systems] each
        first = per_system[next(iter(per_system))]
        rows[name] = {**kw, "seconds": sec, "node": displacement_errors(pred, truth, b.batch, "node"),
                      "system": displacement_errors(pred, truth, b.batch, "system"),
                      "se_over_systems": {k: _se(v) for k, v in per_system[name].items()},
                      "paired_vs_first": {k: [float((v - first[k]).mean()), _se(v - first[k])]
                                          for k, v in per_system[name].items()}}  # fmt: skip
        e, s, se = rows[name]["node"], rows[name]["system"], rows[name]["se_over_systems"]
        print(f"{name:<22} avg {e['ade_avg']:.4f}/{e['fde_avg']:.4f} "
              f"(+- {se['ade_avg']:.4f}/{se['fde_avg']:.4f})  "
              f"min/node {e['ade_min']:.4f}/{e['fde_min']:.4f}  "
              f"min/system {s['ade_min']:.4f}/{s['fde_min']:.4f}  ({sec:.0f} s)")  # fmt: skip
    report = {"ckpt": args.ckpt, "systems": ds.source, "num_systems": len(ds), "k": args.k,
              "steps": args.steps, "train_timesteps": T, "seed": args.seed, "sampler": "ddpm",
              "variants": rows,
              "device": device_description("cpu"), "python": platform.python_version(),
              "command": "python eval/fidelity_geotdm.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items() if v is not None)}  # fmt: skip
    if args.json:
        print(f"JSON {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
