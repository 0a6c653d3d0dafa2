"""Quality per denoiser call: molecule stability and connected validity (QM9 exports), or forecast ADE/FDE
(``--family trajectories``: N-body exports), against the number of sampling steps, for any number of
models (the flow-matching vs diffusion measurement of docs/flow_matching.md).

    .venv/bin/python eval/steps_vs_quality.py --model diffusion=outputs/a/export \
        --model flow=outputs/b/export --steps 10,20,50,100 --extra diffusion=500 --n 1000 \
        --json eval/results/steps_vs_quality_qm9.json --plot docs/steps_vs_quality_qm9.png

Each model samples ``--n`` molecules (seed 0) with its export's own sampler (DDPM for diffusion exports,
the flow's Euler steps for flow-matching ones) at every step count, one denoiser call per step; every set
is scored on its generated bonds under the ``strict`` and ``eqgat`` valence conventions (molecule
stability, with its binomial standard error), RDKit validity and connected validity (EQGAT-diff's
"validity"). Results already in ``--json`` are kept and not sampled again (the runs take about 55 CPU
minutes per 1,000 molecules at 500 steps), so the script can be stopped and resumed.

``--set LABEL:KEY=VALUE`` (repeat) changes one model's sampler for the diagnostics: ``atoms.eta=1`` (one
scheduler's config entry: ``pos``, ``atoms``, ``charges``, ``bonds``), ``time_shift=3`` or ``eta=1`` (every
scheduler that has the entry; the four share one time grid: the pipeline refuses a part-only ``time_shift``),
``last_step=argmax`` (the pipeline's final categorical step); the settings are recorded in the JSON.

Trajectories: ``--n`` test systems of the model's data (freshly simulated N-body systems, seed ``--seed``),
K = ``--k`` forecasts each at every step count; ADE/FDE averaged over the K samples (GeoTDM's N-body "avg")
and the minimum over K per agent, with the standard error of the per-agent average.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from geodiff.errors import GeodiffValueError
from geodiff.io import device_description, write_json
from geodiff.metrics.chemistry import molecule_metrics, stability
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline


def _pairs(values: list[str], name: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        label, sep, rest = v.partition("=")
        if not sep or not label or not rest:
            raise SystemExit(f"{name}: expected LABEL=VALUE, got {v!r}")
        out.append((label, rest))
    return out


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_settings(pipe, settings: dict) -> dict:
    """Change a molecule pipeline's schedulers in place (``part.key`` or ``key`` for every scheduler that has
    it, see the module docstring); returns the pipeline call's own arguments (``last_step``)."""
    from geodiff.schedulers import MoleculeSchedulers

    call, parts, every = {}, {}, MoleculeSchedulers.PARTS
    for key, value in settings.items():
        if key == "last_step":
            call[key] = value
            continue
        part, _, name = key.rpartition(".")
        targets = [part] if part else every
        hit = False
        for t in targets:
            sched = parts.get(t, getattr(pipe.schedulers, t))
            if name not in sched.config:
                continue
            parts[t] = type(sched).from_config(sched.config, **{name: value})
            hit = True
        if not hit:
            raise SystemExit(f"--set {key}: no scheduler of this model has {name!r}")
    pipe.schedulers = MoleculeSchedulers(**{t: parts.get(t, getattr(pipe.schedulers, t)) for t in every})
    return call


def score(mols) -> dict:
    m = molecule_metrics(mols)
    eq = stability(mols, table="eqgat")
    n = len(mols)
    out = {"n": n}
    values = {"mol_stability_strict": m["mol_stability"], "mol_stability_eqgat": eq["mol_stability"],
              "validity": m["validity"], "connected_validity": m["connected_validity"]}  # fmt: skip
    for key, value in values.items():
        out[key] = float(value)
        out[key + "_se"] = math.sqrt(max(value * (1 - value), 0.0) / max(n, 1))
    return out


def score_forecasts(pred: torch.Tensor, truth: torch.Tensor, batch: torch.Tensor) -> dict:
    from geodiff.metrics.trajectories import displacement_errors

    e = displacement_errors(pred, truth, batch, "node")
    d = (pred.double() - truth.double()).norm(dim=-1)  # [K, nodes, frames]
    per_node = d.mean(-1).mean(0)
    out = {key: float(e[key]) for key in ("ade_avg", "fde_avg", "ade_min", "fde_min")}
    out["ade_avg_se"] = float(per_node.std() / math.sqrt(len(per_node)))
    out["fde_avg_se"] = float(d[..., -1].mean(0).std() / math.sqrt(len(per_node)))
    out["n"] = int(batch.max()) + 1
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trajectories = results.get("family") == "trajectories"
    panels = ((("ade_avg", "ADE, average of K"), ("fde_avg", "FDE, average of K")) if trajectories else
              (("mol_stability_eqgat", "molecule stability (eqgat rule)"),
               ("mol_stability_strict", "molecule stability (strict rule)"),
               ("connected_validity", "connected validity")))  # fmt: skip
    scale = 1 if trajectories else 100
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 4.2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for label, runs in results["models"].items():
            steps = sorted(int(s) for s in runs)
            y = [scale * runs[str(s)][key] for s in steps]
            err = [scale * runs[str(s)][key + "_se"] for s in steps]
            ax.errorbar(steps, y, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("denoiser calls (sampling steps)")
        ax.set_ylabel("data units" if trajectories else "%")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n = next(iter(next(iter(results["models"].values())).values()))["n"]
    what = (f"N-body, {n} systems x K per point" if trajectories else
            f"QM9, {n} molecules per point, generated bonds")  # fmt: skip
    fig.suptitle(f"{what} (+- one standard error)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="LABEL=EXPORT (repeat)")
    ap.add_argument("--steps", default="10,20,50,100")
    ap.add_argument(
        "--extra", action="append", default=[], help="LABEL=STEPS: more step counts for one model"
    )
    ap.add_argument("--set", action="append", default=[], help="LABEL:KEY=VALUE: a sampler setting")
    ap.add_argument("--family", choices=["molecules", "trajectories"], default="molecules")
    ap.add_argument("--n", type=int, default=1000, help="molecules, or test systems")
    ap.add_argument("--k", type=int, default=5, help="forecasts per system (trajectories)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    models = _pairs(a.model, "--model")
    extra: dict[str, list[int]] = {}
    for label, s in _pairs(a.extra, "--extra"):
        extra.setdefault(label, []).extend(int(x) for x in s.split(","))
    settings: dict[str, dict] = {}
    for item in a.set:
        label, sep, kv = item.partition(":")
        key, sep2, value = kv.partition("=")
        if not (sep and sep2 and label and key):
            raise SystemExit(f"--set: expected LABEL:KEY=VALUE, got {item!r}")
        settings.setdefault(label, {})[key] = _value(value)
    path = Path(a.json)
    results = json.loads(path.read_text()) if path.is_file() else {"models": {}, "exports": {}, "runs": {}}
    results["family"] = a.family
    for label, export in models:
        if a.family == "trajectories":
            from geodiff.data.datamodules import systems_for_sampling
            from geodiff.data.trajectories import collate_trajectories
            from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

            pipe = TrajectoryDiffusionPipeline.from_pretrained(export)
            ds = systems_for_sampling(pipe.data_info, None, "test", a.n, a.seed)
            systems = collate_trajectories(ds.samples[: a.n])
            c = pipe.model.config
            truth = systems.x[:, c.num_cond : c.num_cond + c.num_target]
        else:
            pipe = MoleculeDiffusionPipeline.from_pretrained(export)
        call = apply_settings(pipe, settings.get(label, {})) if a.family == "molecules" else {}
        if settings.get(label):
            results.setdefault("settings", {})[label] = settings[label]
        results["exports"][label] = str(export)
        runs = results["models"].setdefault(label, {})
        for steps in sorted({*(int(x) for x in a.steps.split(",")), *extra.get(label, [])}):
            if str(steps) in runs and runs[str(steps)]["n"] >= a.n:
                continue
            t0 = time.time()
            if a.family == "trajectories":
                out = pipe(systems, num_samples=a.k, num_inference_steps=steps, seed=a.seed, progress=False)
                scores = score_forecasts(out.trajectories, truth, systems.batch)
            else:
                try:
                    mols = pipe(num_samples=a.n, num_inference_steps=steps, batch_size=a.batch_size,
                                seed=a.seed, progress=False, **call).molecules  # fmt: skip
                except GeodiffValueError as e:
                    raise SystemExit(f"{label}: {e}") from None
                scores = score(mols)
            seconds = time.time() - t0
            runs[str(steps)] = {**scores, "seconds": seconds, "sampler": type(pipe.scheduler).__name__}
            where = {"device": device_description("cpu"), "threads": torch.get_num_threads(), "seed": a.seed}
            results["runs"][f"{label}@{steps}"] = where
            r = runs[str(steps)]
            if a.family == "trajectories":
                line = (f"ADE/FDE avg of {a.k} {r['ade_avg']:.4f}/{r['fde_avg']:.4f}  "
                        f"min {r['ade_min']:.4f}/{r['fde_min']:.4f}")  # fmt: skip
            else:
                line = (f"stability eqgat {100 * r['mol_stability_eqgat']:5.1f} % strict "
                        f"{100 * r['mol_stability_strict']:5.1f} %  connected validity "
                        f"{100 * r['connected_validity']:5.1f} %")  # fmt: skip
            print(f"{label:<10} {steps:>4} steps  {line}  ({seconds:.0f} s)", flush=True)
            write_json(path, results, indent=1)  # after every point: resumable
    if a.plot:
        plot(results, a.plot)
        print(f"plot {a.plot}")


if __name__ == "__main__":
    main()
