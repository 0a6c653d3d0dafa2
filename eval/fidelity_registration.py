"""DiffusionReg's test-time loop against geodiff's, on the same model and the same TUD-L pairs.

    .venv/bin/python eval/fidelity_registration.py --pairs 60 \
        --json eval/results/fidelity_registration_tudl.json

Variants of the ``diffusion`` method, all with 5 reverse steps from the identity, seed 0:

* ``geodiff``: the 200-step training schedule strided to 5 steps, the training noise scales (0.05 / 0.03),
  the time-conditioned surrogate, the last ``H_t``, then 3 clean-step refinement passes (the default);
* ``geodiff_no_refine``: the same without the refinement passes;
* ``reference``: the reference code's test loop (Jiang-HB/DiffusionReg ``test.py``,
  ``utils/diffusion_scheduler.py``): a fresh 5-step cosine schedule, noise scales 0.1 / 0.01, surrogate
  calls at t = 5 .. 2, the last clean-pose estimate returned, no refinement.

Pairs: the README's TUD-L protocol (``eval/eval_registration.py``: 1,024 points per cloud, Euler angles in
[-A, A], translations up to 0.5 radii; noisy = jitter N(0, 0.01 r) clipped at 0.05 r). Translation recall is
reported both ways: geodiff's (Euclidean distance < 1/2/5 cm) and the reference's (``utils/criterion.py``:
squared distance in cm^2 < 1/2/5).
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
from geodiff.pipelines.registration import RegistrationPipeline  # noqa: E402
from geodiff.pipelines.registration_benchmark import evaluate_registration  # noqa: E402

VARIANTS = {"geodiff": ("geodiff", 3), "geodiff_no_refine": ("geodiff", 0), "reference": ("reference", 0)}
KEYS = ("rotation_recall_5deg", "rotation_recall_10deg", "rotation_recall_20deg", "translation_recall_1cm",
        "translation_recall_2cm", "translation_recall_5cm", "translation_recall_1cm_squared",
        "translation_recall_2cm_squared", "translation_recall_5cm_squared", "add_s_0.1d",
        "rotation_error_median_deg")  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="checkpoints/registration_tudl_small")
    ap.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "data" / "registration" / "tudl"))
    ap.add_argument("--pairs", type=int, default=60, help="pairs per setting")
    ap.add_argument("--angles", type=float, nargs="+", default=[45.0, 180.0])
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--keep", type=float, default=1.0, help="partial views: fraction kept by the crop")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    objects = [dict(o, unit="mm") for o in load_tudl_models(args.models_dir)]
    pipe = RegistrationPipeline.from_pretrained(args.ckpt)
    results, t0 = {}, time.time()
    for angle in args.angles:
        cfg = PairConfig(1024, max_angle=angle, noise=args.noise, keep=args.keep)
        pairs = benchmark_pairs(objects, cfg, args.pairs, args.seed)
        key = f"{angle:g}deg_noise{args.noise:g}" + (f"_keep{args.keep:g}" if args.keep < 1 else "")
        results[key] = {}
        for name, (inference, refine) in VARIANTS.items():
            res = evaluate_registration(pairs, ["diffusion"], pipe, args.steps, seed=0, progress=False,
                                        refine_steps=refine, inference=inference)  # fmt: skip
            s = results[key][name] = res["diffusion"]["summary"]
            cols = "  ".join(f"{k.replace('_recall', '')} {s[k]:.1f}" for k in KEYS)
            print(f"{key:<18} {name:<18} {cols}")
    report = {"protocol": " ".join(__doc__.split("\n\n")[2:]).replace("\n", " "), "ckpt": str(args.ckpt),
              "pairs_per_setting": args.pairs, "seed": args.seed, "steps": args.steps, "results": results,
              "command": "python eval/fidelity_registration.py " + " ".join(argv or sys.argv[1:]),
              "seconds": time.time() - t0}  # fmt: skip
    if args.json:
        print(f"JSON {write_json(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
