"""Which symmetry choice wins where: five variants of the trajectory denoiser trained on equal CPU budgets
and scored with the papers' protocols (docs/symmetry.md).

    .venv/bin/python eval/symmetry_study.py --data nbody_charged --minutes 10 \
        [--variants egtn,plain,plain_aug,plain_fa,plain_soft] [--json eval/results/symmetry_charged.json]
    .venv/bin/python eval/symmetry_study.py --data hotel --minutes 10     # an ETH-UCY leave-one-out scene

Variants (the same width and depth class: 64 channels, 3 layers, a 1-layer learnable prior, x0 prediction):

* ``egtn``: GeoTDM's EGTN, exactly E(d)-equivariant;
* ``plain``: attention on raw coordinates (``model.backbone=plain``), no symmetry at all;
* ``plain_aug``: the plain backbone trained on randomly rotated, mirrored and shifted systems;
* ``plain_fa``: the plain backbone frame-averaged over E(d) (``model.frame_averaging=E``): exact again;
* ``plain_soft``: the plain backbone with one soft-equivariance penalty per type (rotation, reflection,
  translation; strength 1 each; the penalties' minima tracked from 20 % of the run, the strengths adjusted
  once by Kim et al.'s rule at 40 %). Not permutation: the plain backbone is a graph network, exactly
  permutation-equivariant, so its permutation penalty is float round-off, and as the rule's reference (the
  smallest minimum) it would switch the other penalties off. Not from step 0 either: the untrained network
  returns its input (a zero-initialised head), exactly equivariant, so every minimum would be 0.

Each trains from scratch for ``--minutes`` of wall time (Lightning ``max_time``, seed 0) on the 2-core
machine, one after the other, and is then scored on the test split: N-body with K = 5 samples, average ADE
/ FDE over the samples (GeoTDM's "avg of 5"), 100 systems; ETH-UCY with K = 20, min over the samples per
agent on EqMotion windows (``data.windows=eqmotion``, focal agents: the windows GeoTDM's paper numbers come
from), ``--systems`` test windows spread evenly over the test split. DDPM, 100 strided steps, seed 0. The
soft variant's warm-up and adjustment steps are set from its measured step rate (22 timed steps first).
Run each stream with ``OMP_NUM_THREADS=1`` so that a minute of wall time is a minute of one core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
VARIANTS = {
    "egtn": [],
    "plain": ["model.backbone=plain"],
    "plain_aug": ["model.backbone=plain", "module.augment=[rotation,reflection,translation]"],
    "plain_fa": ["model.backbone=plain", "model.frame_averaging=E"],
    "plain_soft": ["model.backbone=plain",
                   "module.soft_equivariance={rotation: 1.0, reflection: 1.0, translation: 1.0}"],
}  # fmt: skip


def geodiff(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "geodiff.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"geodiff {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r


def experiment(data: str) -> list[str]:
    if data == "nbody_charged":
        return ["experiment=nbody_charged_geotdm_small"]
    if data in SCENES:
        return ["experiment=eth_ucy_geotdm_small", f"data.scene={data}", "data.windows=eqmotion"]
    raise SystemExit(f"--data: nbody_charged or an ETH-UCY scene ({', '.join(SCENES)}), got {data!r}")


def soft_steps_per_minute(data: str) -> float:
    """Training steps per minute of the soft variant, from 20 timed steps (the adjustment is set from it)."""
    import torch

    from geodiff.config import compose, instantiate

    cfg = compose("train", [*experiment(data), *VARIANTS["plain_soft"]])
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    module = instantiate(cfg.module, model=instantiate(cfg.model))
    opt = torch.optim.Adam(module.model.parameters(), lr=1e-4)
    batches = iter(dm.train_dataloader())
    for k in range(22):
        if k == 2:
            t0 = time.perf_counter()
        out = module.loss(module.model, next(batches))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return 20 / (time.perf_counter() - t0) * 60


def forecast(export: Path, nbody: bool, systems: int, k: int, npz: Path) -> None:
    """K DDPM forecasts (100 strided steps, seed 0) of the test systems: ``systems`` fresh N-body systems,
    or ``systems`` ETH-UCY test windows evenly spread over the whole test split (every window if fewer)."""
    from geodiff.data.datamodules import systems_for_sampling
    from geodiff.data.trajectories import collate_trajectories
    from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline, forecast_and_score

    pipe = TrajectoryDiffusionPipeline.from_pretrained(export)
    ds = systems_for_sampling(pipe.data_info, None, "test", systems if nbody else None, seed=0)
    ds.spread_evenly(systems)
    forecast_and_score(pipe, collate_trajectories(ds.samples), k, npz, None, ds.source, seed=0,
                       num_inference_steps=100, progress=False, batch_size=2048)  # fmt: skip


def per_item(npz: Path, nbody: bool) -> tuple[np.ndarray, np.ndarray]:
    """The study's ADE and FDE per scored item, from the forecasts: per focal agent (ETH-UCY, min of K) or
    per system (N-body, its average over its K samples and nodes); their means are the table's figures."""
    import torch

    from geodiff.metrics.trajectories import focal_nodes, item_errors

    z = {k: torch.from_numpy(np.load(npz)[k]) for k in ("pred", "truth", "batch")}
    if nbody:
        e = item_errors(z["pred"], z["truth"], z["batch"], over="system")
        return e["ade_avg"].numpy(), e["fde_avg"].numpy()
    e, focal = item_errors(z["pred"], z["truth"]), focal_nodes(z["batch"])
    return e["ade_min"][focal].numpy(), e["fde_min"][focal].numpy()


def _se(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(len(v)))


def table(paths: list[str], out: str = "outputs/symmetry") -> str:
    """The markdown tables of docs/symmetry.md from study JSONs: ADE / FDE (+- one standard error when the
    forecasts are still under ``out``) and training steps per variant; each variant's paired difference from
    the EGTN on the same items (+- its standard error); the soft variant's discovered ratios
    ``R_k / min_j R_j`` and adjusted strengths."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    names = list(VARIANTS)
    lines = ["| data (protocol, budget) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in runs:
        v = r["variants"]
        best = min(v, key=lambda n: v[n]["ade"])
        npz = {n: ROOT / out / f"{r['data']}_{n}" / "forecast.npz" for n in v}
        items = {n: per_item(f, r["data"] == "nbody_charged") for n, f in npz.items() if f.is_file()}
        r["items"] = items
        cells = []
        for n in names:
            if n not in v:
                cells.append("-")
                continue
            text = f"{v[n]['ade']:.3f} / {v[n]['fde']:.3f}"
            if n in items:
                text += f" +- {_se(items[n][0]):.3f} / {_se(items[n][1]):.3f}"
            text += f" ({v[n]['steps']:,} steps)"
            cells.append(f"**{text}**" if n == best else text)
        lines.append(
            f"| {r['data']} ({r['protocol']}, {r['minutes']:g} CPU min) | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| data | " + " | ".join(f"{n} - egtn" for n in names[1:]) + " |",
        "|---" * len(names) + "|",
    ]
    for r in runs:
        base = r["items"].get("egtn")
        if base is None:
            continue
        cells = []
        for n in names[1:]:
            if n not in r["items"]:
                cells.append("-")
                continue
            d = [mine - theirs for mine, theirs in zip(r["items"][n], base, strict=True)]
            cells.append(f"{d[0].mean():+.3f} +- {_se(d[0]):.3f} / {d[1].mean():+.3f} +- {_se(d[1]):.3f}")
        lines.append(f"| {r['data']} | " + " | ".join(cells) + " |")
    lines += ["", "| data | ratio R_k / min_j R_j: rotation / reflection / translation | strengths after the "
              "adjustment |", "|---|---|---|"]  # fmt: skip
    for r in runs:
        soft = r["variants"].get("plain_soft", {}).get("soft_equivariance")
        if soft:
            ratio = " / ".join(f"{soft['penalty_ratio'][t]:.3g}" for t in soft["types"])
            strength = " / ".join(f"{soft['strengths'][t]:.3g}" for t in soft["types"])
            lines.append(f"| {r['data']} | {ratio} | {strength} |")
    return "\n".join(lines)


def nero(a, results: dict, nbody: bool) -> None:
    """NERO plots of the trained ``egtn``, ``plain`` and ``plain_fa`` side by side (``--nero``), and their
    largest float32 rotation and translation errors into ``results["nero"]``."""
    from geodiff.testing.nero import equivariance_report, plot_orbit_comparison

    reports = {
        name: equivariance_report(
            ROOT / a.out / f"{a.data}_{name}" / "export",
            num_axes=6,
            num_angles=4 if nbody else 12,  # 2D: 12 angles of SO(2)
            num_items=8,
            task_axes=4,
            task_angles=4 if nbody else 12,
        )  # fmt: skip
        for name in ("egtn", "plain", "plain_fa")
        if name in results["variants"]
    }
    plot_orbit_comparison(reports, a.nero)
    results["nero"] = {name: {sym: r["precisions"]["float32"][sym] for sym in ("rotation", "translation")}
                       for name, r in reports.items()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", nargs="+", default=None, help="print the markdown tables of these study JSONs")
    ap.add_argument("--data")
    ap.add_argument("--nero-only", action="store_true",
                    help="only redo the NERO plots and nero entry of a finished study")  # fmt: skip
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="outputs/symmetry")
    ap.add_argument("--json", default=None)
    ap.add_argument("--systems", type=int, default=None,
                    help="test systems to score (default: 100 fresh N-body systems; 200 ETH-UCY test "
                         "windows spread evenly over the test split)")  # fmt: skip
    ap.add_argument(
        "--nero", default=None, help="PNG: NERO plots of the trained egtn / plain / plain_fa side by side"
    )
    a = ap.parse_args()
    if a.table:
        print(table(a.table, a.out))
        return
    if not a.data:
        ap.error("--data is required")
    nbody = a.data == "nbody_charged"
    if a.nero_only:
        if not (a.json and a.nero):
            ap.error("--nero-only needs --json (the finished study) and --nero")
        results = json.loads(Path(a.json).read_text())
        nero(a, results, nbody)
        Path(a.json).write_text(json.dumps(results, indent=1))
        return
    k = 5 if nbody else 20
    hh, rest = divmod(int(round(a.minutes * 60)), 3600)
    mm, ss = divmod(rest, 60)
    protocol = "avg of 5 (N-body)" if nbody else "min of 20 per focal agent (ETH-UCY, EqMotion windows)"
    systems = a.systems or (100 if nbody else 200)
    results: dict = {"data": a.data, "minutes": a.minutes, "k": k, "sampler": "DDPM, 100 strided steps",
                     "systems": systems, "protocol": protocol, "variants": {}}  # fmt: skip
    for name in a.variants.split(","):
        overrides = list(VARIANTS[name])
        if name == "plain_soft":
            rate = soft_steps_per_minute(a.data)
            overrides += [
                f"module.soft_equivariance_warmup={int(0.2 * rate * a.minutes)}",
                f"module.soft_equivariance_adjust_at={int(0.4 * rate * a.minutes)}",
            ]
        out = ROOT / a.out / f"{a.data}_{name}"
        t0 = time.time()
        budget = f'trainer.max_time="00:{hh:02d}:{mm:02d}:{ss:02d}"'
        geodiff("train", *experiment(a.data), *overrides, f"output_dir={out}", budget,
                "trainer.max_epochs=100000", "module.val_sample_every_n_epochs=0", "seed=0")  # fmt: skip
        minutes = (time.time() - t0) / 60
        meta = json.loads((out / "export" / "trajectories.json").read_text())
        npz, report = out / "forecast.npz", out / "forecast.json"
        forecast(out / "export", nbody, systems, k, npz)
        geodiff(
            "evaluate",
            "task=trajectories",
            f"samples={npz}",
            "min_over=node",
            *([] if nbody else ["agents=focal"]),
            f"output={report}",
        )
        r = json.loads(report.read_text())
        row = {"steps": meta["training"]["global_step"], "wall_minutes": round(minutes, 1),
               "ade": r["ade_avg"] if nbody else r["ade_min"], "fde": r["fde_avg"] if nbody else r["fde_min"],
               "overrides": overrides}  # fmt: skip
        if "soft_equivariance" in meta["training"]:
            row["soft_equivariance"] = meta["training"]["soft_equivariance"]
        results["variants"][name] = row
        print(
            f"{a.data:<14} {name:<11} steps {row['steps']:>6}  ADE {row['ade']:.4f}  FDE {row['fde']:.4f}",
            flush=True,
        )
    if a.nero:
        nero(a, results, nbody)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
