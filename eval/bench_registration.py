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
    sys.exit(main())
