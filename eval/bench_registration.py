"""Registration speed: pairs per second of SE(3) diffusion registration (5 and 20 reverse steps, and the
one-shot surrogate; each followed by 3 clean-step refinement passes, and 5 steps without them as
``diffusion_5_raw``) against ICP (point-to-point and point-to-plane, batched torch; Open3D's FGR when
installed), on the same pairs in the same process, with the accuracy each reaches.

    .venv/bin/python eval/bench_registration.py [--ckpt checkpoints/registration_tudl_small] [--pairs 32]
        [--angle 45] [--refine-steps 3] [--json eval/results/bench_registration.json]

Pairs: TUD-L meshes (../shared/data/registration/tudl), RPMNet protocol, 1,024 points, clean. The
diffusion model computes the invariant features once per pair and only repeats the matching (cdist +
Sinkhorn + Procrustes) at each step; at 512 points the matching dominates, so time grows with the steps.
Ratios are printed against ICP point-to-point.

Scale (``--scale``): time and peak memory of ICP point-to-point (KD-tree neighbours; iterations on at most
50,000 seeded source points, as ``geodiff register`` runs it) and of the Chamfer distance and ADD-S on every
point, for clouds of 10^3 .. 10^6 points (a noisy sphere-and-box surface, the source turned by 10 degrees
and shifted), each size in a fresh process (peak RSS is per process); beside it the memory the dense
N x M distance matrix of the previous implementation would take.

    .venv/bin/python eval/bench_registration.py --scale [--json eval/results/bench_registration_scale.json]

Also: training-step cost of the two invariant encoders (``ppf`` point-pair features vs ``e3nn``
spherical-harmonic power spectrum; batch 8 x 512 points, forward + backward, same network otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodiff.data.pairs import PairConfig, benchmark_pairs  # noqa: E402
from geodiff.data.pointclouds import load_tudl_models  # noqa: E402
from geodiff.io import atomic_path  # noqa: E402
from geodiff.pipelines.icp import open3d_available  # noqa: E402
from geodiff.pipelines.registration import RegistrationPipeline  # noqa: E402
from geodiff.pipelines.registration_benchmark import evaluate_registration  # noqa: E402


def encoder_cost(repeats: int = 5) -> dict[str, float]:
    """Median seconds of one training step (forward + backward) with each encoder."""
    from geodiff.manifolds import se3
    from geodiff.models.registration import RegistrationNet

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 512, 3, generator=g), torch.randn(8, 512, 3, generator=g)
    h, t = se3.random_pose((8,), generator=g), torch.randint(0, 200, (8,), generator=g)
    out = {}
    for enc in ("ppf", "e3nn"):
        torch.manual_seed(0)
        net = RegistrationNet(dim=64, encoder=enc, attention_layers=2)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            net(x, y, h, t)["pose"].sum().backward()
            times.append(time.perf_counter() - t0)
        out[enc] = float(sorted(times[1:])[repeats // 2])
    return out


def scale_one(n: int) -> dict:
    """ICP, Chamfer and ADD-S on one pair of ``n``-point clouds in this process (see the module docstring)."""
    import resource

    import numpy as np

    from geodiff.manifolds import so3
    from geodiff.metrics.pose import add_s, chamfer_distance
    from geodiff.pipelines.icp import icp
    from geodiff.pipelines.registration import ICP_POINTS

    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3))
    sphere = u / np.linalg.norm(u, axis=1, keepdims=True)
    box = rng.uniform(-1, 1, size=(n, 3))
    box[np.arange(n), rng.integers(0, 3, n)] = rng.choice([-1.0, 1.0], n)  # on the faces
    target = np.where(rng.random((n, 1)) < 0.5, sphere, 0.6 * box + [1.2, 0.0, 0.0])
    target += 0.002 * rng.normal(size=(n, 3))
    rot = so3.exp(torch.tensor([0.0, 0.0, np.radians(10.0)], dtype=torch.float64)).numpy()
    shift = np.array([0.05, 0.02, 0.0])
    source = (target - shift) @ rot  # so that target = R source + t with R = rot, t = shift
    truth = np.eye(4)
    truth[:3, :3], truth[:3, 3] = rot, shift
    out = {"points": n}
    t0 = time.perf_counter()
    pose = icp(source, target, max_points=ICP_POINTS)
    out["icp_seconds"] = time.perf_counter() - t0
    err = so3.geodesic_distance(torch.as_tensor(pose[:3, :3]), torch.as_tensor(rot))
    out["icp_rotation_error_deg"] = float(np.degrees(err))
    moved = source @ pose[:3, :3].T + pose[:3, 3]
    t0 = time.perf_counter()
    out["chamfer"] = float(chamfer_distance(moved, target)[0])
    out["chamfer_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["add_s"] = float(add_s(pose[None], truth[None], source)[0])
    out["add_s_seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["dense_matrix_gb"] = n * n * 8 / 2**30  # one float64 N x N distance matrix
    return out


def scale(argv) -> int:
    import subprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--json", default=str(ROOT / "eval" / "results" / "bench_registration_scale.json"))
    args = ap.parse_args(argv)
    rows = []
    heads = ("ICP s", "R err deg", "Chamfer s", "ADD-S s", "peak MB", "dense GB")
    print(f"{'points':>9}" + "".join(f"{h:>10}" for h in heads))
    for n in args.sizes:
        r = subprocess.run([sys.executable, __file__, "--scale-one", str(n)], capture_output=True, text=True,
                           check=True)  # fmt: skip
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        keys = ("icp_seconds", "icp_rotation_error_deg", "chamfer_seconds", "add_s_seconds", "peak_rss_mb")
        print(f"{n:>9,}" + "".join(f"{row[k]:10.3f}" for k in keys) + f"{row['dense_matrix_gb']:10.3g}")
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps({"command": " ".join(sys.argv), "threads": torch.get_num_threads(),
                                   "rows": rows}, indent=1))  # fmt: skip
    print(f"JSON {args.json}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="checkpoints/registration_tudl_small")
    ap.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "data" / "registration" / "tudl"))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--angle", type=float, default=45.0)
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=3,
        help="clean-step passes after the learned methods (diffusion_5_raw always uses 0)",
    )
    ap.add_argument("--json", default=str(ROOT / "eval" / "results" / "bench_registration.json"))
    args = ap.parse_args(argv)
    objects = [dict(o, unit="mm") for o in load_tudl_models(args.models_dir)]
    pairs = benchmark_pairs(objects, PairConfig(num_points=1024, max_angle=args.angle), args.pairs, seed=7)
    pipe = RegistrationPipeline.from_pretrained(args.ckpt)
    _ = pipe([pairs[0].source], [pairs[0].target], progress=False).poses  # warm-up
    rows = {}
    r = args.refine_steps
    runs = [("diffusion_5", "diffusion", 5, r), ("diffusion_5_raw", "diffusion", 5, 0),
            ("diffusion_20", "diffusion", 20, r), ("one_shot", "one_shot", 5, r),
            ("icp_point", "icp_point", 0, 0), ("icp_plane", "icp_plane", 0, 0)]  # fmt: skip
    if open3d_available():
        runs.append(("fgr", "fgr", 0, 0))
    for name, method, steps, refine in runs:
        t0 = time.perf_counter()
        res = evaluate_registration(pairs, [method], pipe, max(steps, 1), progress=False,
                                    refine_steps=refine)[method]["summary"]  # fmt: skip
        wall = time.perf_counter() - t0
        rows[name] = {"pairs_per_second": 1.0 / res["seconds_per_pair"],
                      "rotation_error_mean_deg": res["rotation_error_mean_deg"],
                      "rotation_recall_5deg": res["rotation_recall_5deg"], "add_0.1d": res["add_0.1d"],
                      "wall_seconds": wall}  # fmt: skip
    enc = encoder_cost()
    base = rows["icp_point"]["pairs_per_second"]
    print(f"{args.pairs} TUD-L pairs, {args.angle:g} deg, 1,024 points, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'method':<14}{'pairs/s':>10}{'vs ICP':>9}{'R err°':>9}{'R<5° %':>9}{'ADD %':>8}")
    for name, r in rows.items():
        r["ratio_vs_icp_point"] = r["pairs_per_second"] / base
        acc = f"{r['rotation_error_mean_deg']:9.2f}{r['rotation_recall_5deg']:9.1f}{r['add_0.1d']:8.1f}"
        print(f"{name:<14}{r['pairs_per_second']:10.2f}{r['ratio_vs_icp_point']:8.2f}x{acc}")
    print("training step, batch 8 x 512 points (median of 5): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v
          in enc.items()) + f"; e3nn / ppf = {enc['e3nn'] / enc['ppf']:.2f}x")  # fmt: skip
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps({"pairs": args.pairs, "angle": args.angle, "ckpt": str(args.ckpt),
                                   "refine_steps": args.refine_steps, "threads": torch.get_num_threads(),
                                   "rows": rows,
                                   "training_step_seconds": enc}, indent=1))  # fmt: skip
    print(f"JSON {args.json}")
    return 0


if __name__ == "__main__":
    if "--scale-one" in sys.argv:
        print(json.dumps(scale_one(int(sys.argv[sys.argv.index("--scale-one") + 1]))))
    elif "--scale" in sys.argv:
        sys.exit(scale(sys.argv[1:]))
    else:
        sys.exit(main())
