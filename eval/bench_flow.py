"""Benchmark: what flow matching costs and saves, in one process on the same weights.

    .venv/bin/python eval/bench_flow.py [--qm9 ../shared/data/qm9/test.npz] [--batch 64] [--reps 5]
        [--sample-n 32] [--json eval/results/bench_flow.json]

1. The equivariant OT pairing (``module.ot_alignment``: Hungarian + Kabsch per molecule, on the CPU) per
   training batch of ``--batch`` QM9 molecules, against one training step (loss forward + backward) of the
   ``qm9_eqgat_small`` denoiser (128 / 32 / 16 channels, 6 layers) on the same batch.
2. Sampling throughput (molecules/s) at each scheduler's default steps on the same (untrained) weights:
   diffusion (``scheduler=eqgat_diff``, DDPM, 500 steps) and flow matching (``scheduler=eqgat_flow``, Euler,
   50 steps), and the seconds per denoiser call of each (model plus its four scheduler steps: the two
   samplers' per-step work compared in one process). The quality of a trained flow model per call is
   measured separately (``eval/steps_vs_quality.py``, docs/flow_matching.md).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from geodiff.config import build, compose, instantiate
from geodiff.data.molecules import MoleculeDataset, collate_molecules
from geodiff.io import device_description, write_json
from geodiff.manifolds import euclidean
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline
from geodiff.training.molecules import eqgat_diff_loss, with_data

ROOT = Path(__file__).resolve().parents[1]


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ot_pairing_seconds(batch, reps: int) -> float:
    """Best of ``reps`` timings of the equivariant OT pairing (Hungarian + Kabsch per molecule) of a
    batch's zero-CoM coordinates with as many zero-CoM Gaussian draws (seed 0), as flow-matching training
    pairs them (``module.ot_alignment``)."""
    g = torch.Generator().manual_seed(0)
    x0 = euclidean.remove_mean(batch.pos.double(), batch.batch, batch.num_graphs)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    eps = euclidean.remove_mean(eps, batch.batch, batch.num_graphs)
    return best(lambda: euclidean.ot_align(x0, eps, batch.batch, batch.num_graphs), reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qm9", default=str(ROOT.parent / "shared" / "data" / "qm9" / "test.npz"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sample-n", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    # read twice the batch: molecules whose bonds RDKit cannot perceive are skipped
    ds = MoleculeDataset.from_qm9_npz(args.qm9, cache_dir=None, limit=2 * args.batch, progress=False)
    if len(ds) < args.batch:
        raise SystemExit(f"bench_flow: {args.qm9}: {len(ds)} usable molecules, --batch needs {args.batch}")
    batch = collate_molecules([ds[i] for i in range(args.batch)])
    stats = ds.statistics()
    model = instantiate(compose("train", ["experiment=qm9_eqgat_small"]).model)
    diffusion = with_data(build("scheduler", "eqgat_diff"), stats)
    flow = with_data(build("scheduler", "eqgat_flow"), stats)

    # 1. OT pairing vs a training step
    t_ot = ot_pairing_seconds(batch, args.reps)

    def train_step(ot: bool):
        loss = eqgat_diff_loss(model, batch, flow, generator=torch.Generator().manual_seed(0), ot=ot)["loss"]
        loss.backward()

    t_step = best(lambda: train_step(False), args.reps)
    t_step_ot = best(lambda: train_step(True), args.reps)
    print(f"OT pairing of {args.batch} molecules: {1e3 * t_ot:.1f} ms; training step {1e3 * t_step:.0f} ms "
          f"without, {1e3 * t_step_ot:.0f} ms with ({t_step_ot / t_step:.3f}x)")  # fmt: skip

    # 2. sampling throughput at the default steps
    rows = {}
    if args.sample_n:
        for name, sch, steps in (("diffusion DDPM 500", diffusion, 500), ("flow Euler 50", flow, 50)):
            pipe = MoleculeDiffusionPipeline(model.eval(), sch, ds.vocab, stats)
            t0 = time.perf_counter()
            pipe(num_samples=args.sample_n, num_inference_steps=steps, seed=0, progress=False)
            sec = time.perf_counter() - t0
            rows[name] = {"steps": steps, "seconds": sec, "molecules_per_s": args.sample_n / sec}
            rate = rows[name]["molecules_per_s"]
            print(f"{name:<20} {args.sample_n} molecules in {sec:.1f} s: {rate:.2f} molecules/s")
        ratio = rows["flow Euler 50"]["molecules_per_s"] / rows["diffusion DDPM 500"]["molecules_per_s"]
        print(f"flow at 50 steps samples {ratio:.1f}x the molecules per second of diffusion at 500")
        per_call = {name: r["seconds"] / r["steps"] for name, r in rows.items()}
        call_ratio = per_call["flow Euler 50"] / per_call["diffusion DDPM 500"]
        rows["per_call_ratio_flow_over_diffusion"] = call_ratio
        print(f"seconds per denoiser call: flow {per_call['flow Euler 50']:.3f}, diffusion "
              f"{per_call['diffusion DDPM 500']:.3f} ({call_ratio:.2f}x)")  # fmt: skip
    report = {"batch": args.batch, "ot_ms": 1e3 * t_ot, "train_step_ms": 1e3 * t_step,
              "train_step_ot_ms": 1e3 * t_step_ot, "sampling": rows, "threads": torch.get_num_threads(),
              "device": device_description("cpu"), "python": platform.python_version(),
              "torch": torch.__version__, "reps": args.reps, "timing": "best of --reps"}  # fmt: skip
    if args.json:
        print(f"JSON {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
