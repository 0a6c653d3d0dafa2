"""Benchmark: `geodiff sample` on one process against the same request sharded over N processes.

    .venv/bin/python eval/bench_sharded_sampling.py [--devices 2] [--n 64] [--steps 50] [--reps 2] [--json F]

Both arms are the command a user runs (`geodiff sample ckpt=qm9_eqgat_small sampler=ddim ...`), timed end to
end (start-up, model loading, sampling, scoring, writing the SDF), alternating baseline / sharded per
repetition; the printed ratio is sharded wall time / single-process wall time (< 1 is faster). On a CPU
machine both arms share its cores (Lightning gives each of the N processes cores / N threads), so this
measures the process-level split against intra-op threading; on N GPUs each process has its own device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geodiff.io import device_description, write_json

ROOT = Path(__file__).resolve().parents[1]


def run(devices: int, n: int, steps: int, device: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "geodiff.cli", "sample", "ckpt=qm9_eqgat_small", f"num_samples={n}",
           "sampler=ddim", f"num_inference_steps={steps}", "seed=0", f"devices={devices}", f"device={device}",
           f"output={out}", f"batch_size={n}"]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--n", type=int, default=64, help="molecules per request")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    base, sharded = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.reps):
            base.append(run(1, args.n, args.steps, args.device, Path(tmp) / f"one_{k}.sdf"))
            sharded.append(run(args.devices, args.n, args.steps, args.device, Path(tmp) / f"many_{k}.sdf"))
            print(f"rep {k}: 1 process {base[-1]:.1f} s, {args.devices} processes {sharded[-1]:.1f} s")
    b, s = statistics.median(base), statistics.median(sharded)
    print(f"{args.n} molecules, DDIM {args.steps} steps, {device_description(args.device)}: "
          f"1 process {b:.1f} s, {args.devices} processes {s:.1f} s -> ratio {s / b:.3f}")  # fmt: skip
    if args.json:
        write_json(args.json, {"command": " ".join(sys.argv), "device": device_description(args.device),
                               "cpu_count": os.cpu_count(), "num_samples": args.n, "steps": args.steps,
                               "devices": args.devices, "single_s": base, "sharded_s": sharded,
                               "ratio_median": s / b})  # fmt: skip


if __name__ == "__main__":
    main()
