"""Registration accuracy sweep on TUD-L: 45 and 180 degrees x clean / noisy / partial, every method on
the same seeded pairs, one JSON and a Markdown table (the README's registration table).

    .venv/bin/python eval/eval_registration.py [--ckpt checkpoints/registration_tudl_small] [--pairs 60]
        [--steps 5] [--refine-steps 3]
        [--methods diffusion one_shot icp_point icp_plane fgr ransac]
        [--json eval/results/registration_tudl.json]

Pairs follow the RPMNet protocol on the three TUD-L meshes (../shared/data/registration/tudl, mm): 1,024
points per cloud sampled independently, Euler angles uniform in [-A, A] per axis, translations up to 0.5
object radii, noisy = jitter N(0, 0.01 r) clipped at 0.05 r, partial = 70 % half-space crops of both clouds.
Every method starts from the clouds as given (ICP from the identity). fgr / ransac need open3d-cpu
(pip install -e '.[eval]'); they are skipped with a note when it is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodiff.data.pairs import PairConfig, benchmark_pairs  # noqa: E402
from geodiff.data.pointclouds import load_tudl_models  # noqa: E402
from geodiff.io import write_json  # noqa: E402
from geodiff.pipelines.icp import open3d_available  # noqa: E402
from geodiff.pipelines.registration import RegistrationPipeline  # noqa: E402
from geodiff.pipelines.registration_benchmark import evaluate_registration  # noqa: E402

SETTINGS = {"clean": {}, "noisy": {"noise": 0.01}, "partial": {"keep": 0.7}}
KEYS = [("rotation_recall_5deg", "R<5°"), ("rotation_recall_20deg", "R<20°"),
        ("translation_recall_1cm", "t<1cm"),
        ("add_0.1d", "ADD<0.1d"), ("add_s_0.1d", "ADD-S<0.1d"), ("rotation_error_mean_deg", "R err mean (°)"),
        ("rotation_error_median_deg", "R err median (°)"), ("seconds_per_pair", "s / pair")]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="checkpoints/registration_tudl_small")
    ap.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "data" / "registration" / "tudl"))
    ap.add_argument("--pairs", type=int, default=60, help="pairs per setting")
    ap.add_argument("--angles", type=float, nargs="+", default=[45.0, 180.0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--methods", nargs="+", default=["diffusion", "one_shot", "icp_point", "icp_plane", "fgr",
                                                     "ransac"])  # fmt: skip
    ap.add_argument("--steps", type=int, default=5, help="reverse diffusion steps")
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=3,
        help="clean-step (t=0) passes of the surrogate after diffusion / one_shot (0: none)",
    )
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", default=str(ROOT / "eval" / "results" / "registration_tudl.json"))
    args = ap.parse_args(argv)
    methods = list(args.methods)
    if not open3d_available() and {"fgr", "ransac"} & set(methods):
        print("note: open3d-cpu not installed; skipping fgr / ransac (pip install -e '.[eval]')")
        methods = [m for m in methods if m not in ("fgr", "ransac")]
    objects = [dict(o, unit="mm") for o in load_tudl_models(args.models_dir)]
    pipe = RegistrationPipeline.from_pretrained(args.ckpt)
    results, t0 = {}, time.time()
    for angle in args.angles:
        for setting in args.settings:
            cfg = PairConfig(num_points=1024, max_angle=angle, **SETTINGS[setting])
            pairs = benchmark_pairs(objects, cfg, args.pairs, seed=args.seed)
            res = evaluate_registration(
                pairs, methods, pipe, args.steps, seed=0, progress=False, refine_steps=args.refine_steps
            )
            key = f"{angle:g}deg_{setting}"
            results[key] = {m: r["summary"] for m, r in res.items()}
            print(f"\n== {key}: {len(pairs)} pairs")
            for m, s in results[key].items():
                print(f"  {m:<10} " + "  ".join(f"{lab} {s[k]:.3g}" for k, lab in KEYS))
    lines = ["| setting | method | " + " | ".join(lab for _, lab in KEYS) + " |",
             "|---|---|" + "---|" * len(KEYS)]  # fmt: skip
    for key, per in results.items():
        for m, s in per.items():
            vals = " | ".join(f"{s[k]:.3f}" if k == "seconds_per_pair" else f"{s[k]:.1f}" for k, _ in KEYS)
            lines.append(f"| {key.replace('deg_', '° ')} | {m} | {vals} |")
    table = "\n".join(lines)
    print("\n" + table)
    report = {"protocol": __doc__.split("\n\n")[2].replace("\n", " "), "ckpt": str(args.ckpt),
              "pairs_per_setting": args.pairs, "seed": args.seed, "diffusion_steps": args.steps,
              "refine_steps": args.refine_steps,
              "command": "python eval/eval_registration.py " + " ".join(argv or sys.argv[1:]),
              "seconds": time.time() - t0, "results": results, "markdown": table}  # fmt: skip
    write_json(args.json, report)
    print(f"JSON {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
