"""Benchmark: batched SO(3)/SE(3) exp and log on 10^6 elements vs scipy's Rotation, same process, CPU.

    .venv/bin/python eval/bench_manifolds.py [--n 1000000] [--repeats 5] [--dtype float64] [--json out.json]

Prints the median wall time of each operation and the ratio scipy_time / geodiff_time (> 1: geodiff is
faster). scipy has no SE(3) map; the SE(3) rows are compared against scipy's SO(3) map plus the same
translation Jacobian applied in NumPy, the cheapest thing a scipy user would write.
Goal (foundation issue): geodiff at least as fast as scipy on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from geodiff.manifolds import se3, so3


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scipy_se3_exp(xi: np.ndarray) -> np.ndarray:
    w, v = xi[:, :3], xi[:, 3:]
    R = Rotation.from_rotvec(w).as_matrix()
    th = np.linalg.norm(w, axis=1)
    small = th < 1e-3
    ts = np.where(small, 1.0, th)
    b = np.where(small, 0.5 - th**2 / 24, (1 - np.cos(ts)) / ts**2)
    c = np.where(small, 1 / 6 - th**2 / 120, (ts - np.sin(ts)) / ts**3)
    wxv = np.cross(w, v)
    t = v + b[:, None] * wxv + c[:, None] * np.cross(w, wxv)
    out = np.zeros((len(xi), 4, 4))
    out[:, :3, :3], out[:, :3, 3], out[:, 3, 3] = R, t, 1
    return out


def scipy_se3_log(T: np.ndarray) -> np.ndarray:
    w = Rotation.from_matrix(T[:, :3, :3]).as_rotvec()
    t = T[:, :3, 3]
    th = np.linalg.norm(w, axis=1)
    small = th < 1e-3
    ts = np.where(small, 1.0, th)
    d = np.where(small, 1 / 12 + th**2 / 720, 1 / ts**2 - np.cos(ts / 2) / (2 * ts * np.sin(ts / 2)))
    wxt = np.cross(w, t)
    v = t - 0.5 * wxt + d[:, None] * np.cross(w, wxt)
    return np.concatenate([w, v], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of elements (default 10^6)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(args.n, 6, generator=g, dtype=torch.float64)
    xi[:, :3] *= 1.2
    w_t, xi_t = xi[:, :3].to(dtype).contiguous(), xi.to(dtype)
    R_t = so3.exp(w_t)
    T_t = se3.exp(xi_t)
    w_np, xi_np = xi[:, :3].numpy().copy(), xi.numpy().copy()
    R_np, T_np = R_t.double().numpy().copy(), T_t.double().numpy().copy()
    rows = [
        ("SO(3) exp", lambda: so3.exp(w_t), lambda: Rotation.from_rotvec(w_np).as_matrix()),
        ("SO(3) log", lambda: so3.log(R_t), lambda: Rotation.from_matrix(R_np).as_rotvec()),
        ("SE(3) exp", lambda: se3.exp(xi_t), lambda: scipy_se3_exp(xi_np)),
        ("SE(3) log", lambda: se3.log(T_t), lambda: scipy_se3_log(T_np)),
    ]
    print(
        f"n = {args.n:,} elements, {args.dtype}, torch threads = {torch.get_num_threads()}, "
        f"median of {args.repeats}"
    )
    print(f"{'operation':<11} {'geodiff (s)':>12} {'scipy (s)':>10} {'scipy/geodiff':>14}")
    results = []
    with torch.no_grad():
        for name, ours, theirs in rows:
            a, b = timeit(ours, args.repeats), timeit(theirs, args.repeats)
            results.append({"operation": name, "geodiff_s": a, "scipy_s": b, "ratio": b / a})
            print(f"{name:<11} {a:>12.4f} {b:>10.4f} {b / a:>13.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"n": args.n, "dtype": args.dtype, "threads": torch.get_num_threads(), "rows": results},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
