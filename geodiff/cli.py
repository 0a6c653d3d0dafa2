"""The ``geodiff`` command line. Thin: it composes Hydra configs from ``configs/`` and calls library code.

    geodiff train experiment=NAME [...]      train a denoiser (Lightning + Hydra), export safetensors
    geodiff sample ckpt=DIR                  sample 3D molecules (SDF + PNG grid) or trajectories (npz + PNG)
    geodiff evaluate samples=PATH            chemistry metrics, Vina docking, trajectory ADE/FDE, pose errors
    geodiff register source=A target=B       rigid transform between two point clouds (SE(3) diffusion)
    geodiff data nbody kind=charged          simulate N-body train/val/test files
    geodiff data registration output=F.npz   a seeded benchmark set of registration pairs
    geodiff schedule [hydra overrides ...]   build, save and plot a diffusion scheduler
    geodiff curves runs=DIR                  training curves of runs (summary + PNG) from their Lightning logs
    geodiff info                             versions and the config groups available

Every subcommand takes Hydra-style overrides (``key=value``, ``group=option``). Errors a user can cause
(a bad override, a missing file, an invalid value) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geodiff.config import as_list, compose, config_dir, instantiate, resolve_checkpoint, resolve_path
from geodiff.errors import GeodiffError, check_count, first_line

__all__ = ["main"]

EXIT_USAGE = 2


# ------------------------------------------------------------------------------------------- schedule
def _plot_schedule(sched, path: Path, inference_timesteps) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from geodiff.io import save_figure

    T = sched.config.num_train_timesteps
    t = torch.arange(T)
    abar = sched.alphas_cumprod
    panels = 3 if hasattr(sched, "sigmas") else 2
    fig, ax = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4))
    ax[0].plot(t, abar, label="abar_t")
    ax[0].plot(t, (1 - abar).sqrt(), label="sqrt(1 - abar_t) (noise std)")
    ax[0].set_xlabel("timestep t")
    ax[0].set_title(type(sched).__name__, fontsize=9)
    ax[1].plot(t, torch.log10(abar / (1 - abar)))
    ax[1].axhline(torch.log10(torch.tensor(1.5)), ls=":", c="gray", lw=0.8)
    ax[1].axhline(torch.log10(torch.tensor(0.05)), ls=":", c="gray", lw=0.8)
    ax[1].set_xlabel("timestep t")
    ax[1].set_ylabel("log10 SNR")
    ax[1].set_title("dotted: EQGAT-diff loss-weight clamp [0.05, 1.5]", fontsize=8)
    if inference_timesteps is not None:
        ts = inference_timesteps
        ax[0].plot(ts, abar[ts], "o", ms=3, c="k", label="inference steps")
    ax[0].legend(fontsize=8)
    if panels == 3:
        ax[2].plot(t, sched.sigmas)
        ax[2].set_xlabel("timestep t")
        ax[2].set_ylabel("IGSO(3) sigma_t")
    save_figure(fig, path, dpi=120)


def cmd_schedule(overrides: list[str]) -> int:
    from omegaconf import OmegaConf

    from geodiff.io import atomic_save_pretrained
    from geodiff.schedulers import MoleculeSchedulers

    cfg = compose("schedule", overrides)
    sched = instantiate(cfg.scheduler)
    if isinstance(sched, MoleculeSchedulers):  # a molecule set: its position schedule sets the time axis
        print(
            "scheduler set for molecules: showing scheduler.pos (atoms, charges, bonds share its time axis)"
        )
        sched = sched.pos
    inference = None
    if cfg.num_inference_steps is not None:
        sched.set_timesteps(int(cfg.num_inference_steps))
        inference = sched.timesteps
    T = sched.config.num_train_timesteps
    abar = sched.alphas_cumprod
    print(f"{type(sched).__name__}  ({OmegaConf.select(cfg, 'scheduler._target_')})")
    print(f"  num_train_timesteps  {T}")
    print(f"  schedule             {getattr(sched.config, 'beta_schedule', '-')}")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        i = min(T - 1, int(round(frac * (T - 1))))
        line = f"  t = {i:5d}   abar = {float(abar[i]):.6f}   SNR = {float(abar[i] / (1 - abar[i])):.4g}"
        if hasattr(sched, "sigmas"):
            line += f"   sigma_rot = {float(sched.sigmas[i]):.4f}"
        print(line)
    if inference is not None:
        shown = ", ".join(str(int(x)) for x in inference[:12]) + (" ..." if len(inference) > 12 else "")
        print(f"  inference timesteps  {shown}")
    if cfg.output:
        out = atomic_save_pretrained(sched, cfg.output)
        print(f"saved {out / 'scheduler_config.json'}")
    if cfg.plot:
        _plot_schedule(sched, Path(cfg.plot), inference)
        print(f"plot  {cfg.plot}")
    return 0


# ------------------------------------------------------------------------------------------ curves
def cmd_curves(overrides: list[str]) -> int:
    import json

    from geodiff.io import atomic_path
    from geodiff.training.curves import check_metrics, plot_runs, read_run, summarise

    cfg = compose("curves", overrides)
    runs = as_list(cfg.runs)
    if not runs:
        raise GeodiffError("runs: give at least one run folder")
    labels = as_list(cfg.labels) or [Path(r).name or r for r in runs]
    if len(labels) != len(runs):
        raise GeodiffError(f"labels: {len(labels)} labels for {len(runs)} runs")
    if len(set(labels)) != len(labels):
        raise GeodiffError(f"labels: not unique ({', '.join(labels)}); name the runs with labels=[...]")
    smooth = check_count("smooth", cfg.smooth, minimum=1)
    logs = {label: read_run(resolve_path(run)) for label, run in zip(labels, runs, strict=True)}
    metrics = as_list(cfg.metrics)
    if metrics:
        check_metrics(logs, metrics)
    summary = {label: summarise(m) for label, m in logs.items()}
    for label, rows in summary.items():
        print(f"{label}")
        for name, r in rows.items():
            print(f"  {name:24s} first {r['first']:.4g}  last {r['last']:.4g} (step {r['last_step']})  "
                  f"best {r['best']:.4g} (step {r['best_step']})")  # fmt: skip
    if cfg.output:
        plot_runs(logs, cfg.output, metrics=metrics, smooth=smooth, title=cfg.title)
        print(f"plot  {cfg.output}")
    if cfg.summary:
        with atomic_path(cfg.summary) as tmp:
            tmp.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"summary  {cfg.summary}")
    return 0


# ------------------------------------------------------------------------------------------- train
def cmd_train(overrides: list[str]) -> int:
    from geodiff.training.train import command_line, train

    cfg = compose("train", overrides)
    module = train(cfg, command=command_line(overrides))
    if module.trainer is None or module.trainer.is_global_zero:
        print(f"outputs: {cfg.output_dir} (checkpoints/, export/ with the EMA model in safetensors)")
    return 0


# ------------------------------------------------------------------------------------------- sample
def cmd_sample(overrides: list[str]) -> int:
    import time

    from geodiff.metrics.chemistry import molecule_metrics, most_unstable
    from geodiff.pipelines.molecules import MoleculeDiffusionPipeline, draw_grid, write_sdf

    cfg = compose("sample", overrides)
    steps = cfg.get("num_inference_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise GeodiffError(f"num_inference_steps: must be a positive integer or null, got {steps!r}")
    ckpt = resolve_checkpoint(cfg.ckpt)
    if (ckpt / "trajectories.json").is_file():
        return _sample_trajectories(cfg, ckpt)
    if not isinstance(cfg.num_samples, int) or cfg.num_samples <= 0:
        raise GeodiffError(f"num_samples: must be a positive integer, got {cfg.num_samples!r}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size <= 0:
        raise GeodiffError(f"batch_size: must be a positive integer, got {cfg.batch_size!r}")
    pipe = MoleculeDiffusionPipeline.from_pretrained(ckpt)
    pipe.model.to(cfg.device)
    t0 = time.time()
    records = pipe(num_samples=int(cfg.num_samples), num_atoms=cfg.num_atoms, sampler=cfg.sampler,
                   num_inference_steps=cfg.num_inference_steps, batch_size=int(cfg.batch_size),
                   seed=cfg.seed, last_step=cfg.get("last_step", "sample"))  # fmt: skip
    seconds = time.time() - t0
    out = Path(cfg.output or "samples/molecules.sdf")
    tagged = write_sdf(records, pipe.vocab, out)
    grid = Path(cfg.grid) if cfg.grid else out.with_suffix(".png")
    draw_grid(records, pipe.vocab, grid)
    n = len(records)
    m = molecule_metrics(records, pipe.vocab)
    print(
        f"sampled {n} molecules in {seconds:.1f} s ({n / seconds:.2f} molecules/s, {cfg.sampler}, "
        f"{cfg.num_inference_steps or pipe.schedulers.num_train_timesteps} steps)"
    )
    print(
        f"molecule stability {100 * m['mol_stability']:.1f} %, "
        f"atom stability {100 * m['atom_stability']:.1f} %, "
        f"validity {100 * m['validity']:.1f} %, connected validity {100 * m['connected_validity']:.1f} %, "
        f"uniqueness {100 * m['uniqueness']:.1f} % (generated bonds; aromatic = 1.5)"
    )
    if m["unstable_atoms"]:
        print(f"most unstable atoms: {most_unstable(m['unstable_atoms'])}")
    if tagged:
        print(f"{tagged} molecules written with neutral charges (their charges are not representable)")
    print(f"SDF  {out}\nPNG  {grid}")
    return 0


def _sample_trajectories(cfg, ckpt: Path) -> int:
    import time

    from geodiff.data.datamodules import systems_for_sampling
    from geodiff.data.trajectories import collate_trajectories
    from geodiff.metrics.trajectories import constant_velocity, displacement_errors
    from geodiff.pipelines.trajectories import (
        TrajectoryDiffusionPipeline,
        plot_trajectories,
        save_trajectories,
    )

    for key in ("num_systems", "samples_per_system"):
        if not isinstance(cfg[key], int) or cfg[key] <= 0:
            raise GeodiffError(f"{key}: must be a positive integer, got {cfg[key]!r}")
    pipe = TrajectoryDiffusionPipeline.from_pretrained(ckpt)
    pipe.model.to(cfg.device)
    info, c = pipe.data_info, pipe.model.config
    ds = systems_for_sampling(info, str(resolve_path(cfg.data)) if cfg.data else None, cfg.split,
                              int(cfg.num_systems), int(cfg.seed))  # fmt: skip
    b = collate_trajectories(ds.samples)
    k = int(cfg.samples_per_system)
    t0 = time.time()
    pred = pipe(b, num_samples=k, num_inference_steps=cfg.num_inference_steps, sampler=cfg.sampler,
                batch_size=int(cfg.batch_size), seed=cfg.seed).trajectories  # fmt: skip
    seconds = time.time() - t0
    steps = cfg.num_inference_steps or pipe.scheduler.config.num_train_timesteps
    what = "forecast" if pipe.model.conditional else "generated"
    print(f"{what} {b.num_graphs} systems x {k} samples in {seconds:.1f} s ({cfg.sampler}, {steps} steps) "
          f"from {ds.source}")  # fmt: skip
    out = Path(cfg.output or "samples/trajectories.npz")
    arrays = {
        "pred": pred,
        "batch": b.batch,
        "h": b.h,
        "num_cond": c.num_cond,
        "dataset": info.get("name", ""),
    }
    if pipe.model.conditional:
        arrays["observed"] = b.x[:, : c.num_cond]
        truth = b.x[:, c.num_cond : c.num_cond + c.num_target]
        if truth.shape[1] == c.num_target:
            arrays["truth"] = truth
            e = displacement_errors(pred, truth, b.batch)
            cv = displacement_errors(constant_velocity(arrays["observed"], c.num_target), truth)
            print(
                f"ADE/FDE avg of {k}: {e['ade_avg']:.4f}/{e['fde_avg']:.4f}   min of {k}: "
                f"{e['ade_min']:.4f}/{e['fde_min']:.4f}   (constant velocity {cv['ade']:.4f}/{cv['fde']:.4f})"
            )
    else:
        arrays["reference"] = b.x[:, : c.num_target]
    save_trajectories(out, **arrays)
    plot = Path(cfg.plot) if cfg.plot else out.with_suffix(".png")
    title = f"{info.get('name', '')}: observed (thick), ground truth (dashed), {k} generated (thin)"
    plot_trajectories(plot, b, pred, c.num_cond, title=title)
    print(f"NPZ  {out}\nPNG  {plot}")
    return 0


# ------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(overrides: list[str]) -> int:
    from geodiff.metrics.evaluate import evaluate_molecule_file, format_report, write_report

    cfg = compose("evaluate", overrides)
    if cfg.task == "registration":
        return _evaluate_registration(cfg)
    if not cfg.samples:
        raise GeodiffError(f"task={cfg.task} needs samples=PATH")
    if cfg.task == "docking":
        return _evaluate_docking(cfg)
    if cfg.task == "trajectories":
        return _evaluate_trajectories(cfg)
    if cfg.task != "molecules":
        raise GeodiffError(
            f"task: unknown task {cfg.task!r} (molecules, docking, trajectories or registration)"
        )
    if cfg.bonds not in ("auto", "edm", "rdkit", "generated"):
        raise GeodiffError(f"bonds: {cfg.bonds!r} is not one of auto, edm, rdkit, generated")
    if cfg.valence_table not in ("charged", "edm"):
        raise GeodiffError(f"valence_table: {cfg.valence_table!r} is not one of charged, edm")
    report = evaluate_molecule_file(resolve_path(cfg.samples), resolve_path(cfg.reference) if cfg.reference
                                    else None, cfg.bonds, cfg.valence_table, cfg.reference_limit)  # fmt: skip
    print(format_report(report))
    for item in report["unreadable"][:5]:
        print(f"  unreadable: {item['record']}: {item['reason']}")
    if cfg.output:
        print(f"JSON {write_report(report, cfg.output)}")
    return 0


def _evaluate_trajectories(cfg) -> int:
    import json

    from geodiff.io import atomic_path
    from geodiff.metrics.trajectories import evaluate_trajectory_file

    if cfg.min_over not in ("node", "system"):
        raise GeodiffError(f"min_over: {cfg.min_over!r} is not one of node, system")
    ref = resolve_path(cfg.reference) if cfg.reference else None
    r = evaluate_trajectory_file(resolve_path(cfg.samples), cfg.k, cfg.min_over, ref)
    print(f"{r['dataset'] or 'trajectories'}: {r['num_systems']} systems, {r['num_nodes']} nodes, "
          f"{r['num_frames']} frames, K = {r['k']}")  # fmt: skip
    if "ade" in r:
        print(f"  {'method':<22}{'ADE':>9}{'FDE':>9}")
        print(f"  {'geodiff (avg of K)':<22}{r['ade_avg']:9.4f}{r['fde_avg']:9.4f}")
        print(f"  {'geodiff (min of K)':<22}{r['ade_min']:9.4f}{r['fde_min']:9.4f}")
        for name, b in r.get("baselines", {}).items():
            print(f"  {name.replace('_', ' '):<22}{b['ade']:9.4f}{b['fde']:9.4f}")
    if "marginal_score" in r:
        print(f"  marginal score {r['marginal_score']:.5f} (L1 gap of 50-bin coordinate histograms)")
    if cfg.output:
        with atomic_path(cfg.output) as tmp:
            tmp.write_text(json.dumps(r, indent=1))
        print(f"JSON {cfg.output}")
    return 0


def _evaluate_registration(cfg) -> int:
    import json

    from geodiff.data.pointclouds import load_pairs
    from geodiff.io import atomic_path
    from geodiff.pipelines.registration_benchmark import (
        METHODS,
        evaluate_registration,
        format_registration_table,
    )

    if not cfg.pairs:
        raise GeodiffError(
            "task=registration needs pairs=PATH (a benchmark npz from `geodiff data registration`)"
        )
    methods = as_list(cfg.methods) or []
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise GeodiffError(f"methods: unknown {unknown or '[]'} (choose from {', '.join(METHODS)})")
    pairs, meta = load_pairs(resolve_path(cfg.pairs))
    pipe = None
    if {"diffusion", "one_shot"} & set(methods):
        from geodiff.pipelines.registration import RegistrationPipeline

        pipe = RegistrationPipeline.from_pretrained(cfg.ckpt)
    refine = check_count("refine_steps", cfg.get("refine_steps", 3))
    res = evaluate_registration(pairs, methods, pipe, int(cfg.num_inference_steps), int(cfg.seed),
                                refine_steps=refine)  # fmt: skip
    desc = ", ".join(f"{k}={v}" for k, v in meta.items() if k in ("source", "max_angle", "noise", "keep"))
    print(
        f"{len(pairs)} pairs ({desc}); recalls in %, diffusion with {cfg.num_inference_steps} steps, "
        f"{refine} refinement passes"
    )
    print(format_registration_table(res))
    if cfg.output:
        report = {"task": "registration", "pairs": str(cfg.pairs), "pair_config": meta,
                  "ckpt": str(cfg.ckpt) if pipe else None,
                  "num_inference_steps": int(cfg.num_inference_steps), "refine_steps": refine,
                  "methods": res}  # fmt: skip
        with atomic_path(cfg.output) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
        print(f"JSON {cfg.output}")
    return 0


def _evaluate_docking(cfg) -> int:
    import json

    from geodiff.io import atomic_path
    from geodiff.metrics.docking import DockingBox, dock_molecules
    from geodiff.metrics.structures import read_sdf_rdkit

    if not cfg.receptor:
        raise GeodiffError("task=docking needs receptor=PATH (.pdbqt or .pdb)")
    size = [float(x) for x in cfg.size]
    if cfg.ligand:
        box = DockingBox.from_ligand(resolve_path(cfg.ligand), size)
    elif cfg.center is not None:
        if len(cfg.center) != 3:
            raise GeodiffError(f"center: need [x, y, z], got {list(cfg.center)}")
        box = DockingBox(tuple(float(x) for x in cfg.center), tuple(size))
    elif cfg.box == "each":
        box = "each"
    elif cfg.box:
        box = DockingBox.from_vina_config(resolve_path(cfg.box))
    else:
        raise GeodiffError("task=docking needs a box: ligand=REF.sdf, center=[x,y,z], box=FILE or box=each")
    mols, names, failures = read_sdf_rdkit(resolve_path(cfg.samples))
    if not mols:
        raise GeodiffError(f"{cfg.samples}: no readable molecules ({len(failures)} unreadable records)")
    pose_dir = cfg.pose_dir or (str(Path(cfg.output).with_suffix("")) + "_poses" if cfg.output else None)
    if cfg.get("posebusters") and (cfg.mode == "score_only" or not pose_dir
                                   or not str(cfg.receptor).lower().endswith(".pdb")):  # fmt: skip
        raise GeodiffError(
            "posebusters=true needs poses (mode=dock or local_only, and output= or pose_dir=) and the "
            "receptor as a .pdb"
        )
    results, summary = dock_molecules(mols, resolve_path(cfg.receptor), box, mode=cfg.mode,
                                      exhaustiveness=int(cfg.exhaustiveness), num_poses=int(cfg.num_poses),
                                      seed=int(cfg.seed), processes=cfg.processes, timeout=float(cfg.timeout),
                                      pose_dir=pose_dir, names=names)  # fmt: skip
    if cfg.get("posebusters"):
        from geodiff.metrics.docking import posebusters_checks

        checks = posebusters_checks([r.get("pose_file") for r in results], resolve_path(cfg.receptor))
        for r, c in zip(results, checks, strict=True):
            if c is not None:
                r["posebusters"] = c
        valid = [c["pb_valid"] for c in checks if c is not None]
        summary["posebusters_valid"] = float(sum(valid) / len(valid)) if valid else 0.0
    for r in results:
        state = f"{r['score']:8.3f} kcal/mol" if r.get("ok") else f"failed: {r.get('reason')}"
        notes = f"  ({'; '.join(r['notes'])})" if r.get("notes") else ""
        if "posebusters" in r:
            pb = r["posebusters"]
            notes += f"  PB-valid {pb['pb_valid']} ({pb['passed']}/{pb['checks']})"
        print(f"{r['index']:5d}  {r['name'][:30]:<30}  {state}{notes}")
    keys = ("mean", "median", "best", "best_10_percent_mean")
    stats = ", ".join(f"{k} {summary[k]:.3f}" for k in keys if k in summary)
    print(f"docked {summary['num_docked']}/{summary['num_molecules']} ({cfg.mode}); {stats}")
    if "posebusters_valid" in summary:
        print(f"PoseBusters (dock checks): {100 * summary['posebusters_valid']:.1f} % of poses pass all")
    for name, reason in failures[:5]:
        print(f"  unreadable: {name}: {reason}")
    if cfg.output:
        report = {"task": "docking", "mode": cfg.mode, "receptor": str(cfg.receptor),
                  "box": box if isinstance(box, str) else {"center": box.center, "size": box.size},
                  "summary": summary, "molecules": results,
                  "unreadable": [{"record": n, "reason": r} for n, r in failures]}  # fmt: skip
        with atomic_path(cfg.output) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
        print(f"JSON {cfg.output}")
    return 0


# ------------------------------------------------------------------------------------------- data
def cmd_data(overrides: list[str]) -> int:
    from geodiff.data.trajectories import generate_nbody_split

    if overrides and overrides[0] == "registration":
        return _data_registration(overrides[1:])
    if not overrides or overrides[0] != "nbody":
        raise GeodiffError(
            "usage: geodiff data nbody [kind=charged ... output=DIR] | "
            "geodiff data registration [...] output=F.npz"
        )
    cfg = compose("data", overrides[1:])
    for key in ("num_train", "num_val", "num_test", "seed"):
        if not isinstance(cfg[key], int):
            raise GeodiffError(f"{key}: must be an integer, got {cfg[key]!r}")
    out = Path(cfg.output or f"data/nbody_{cfg.kind}")
    generate_nbody_split(out, cfg.kind, cfg.num_train, cfg.num_val, cfg.num_test, cfg.seed, cfg.num_particles)
    return 0


def _data_registration(overrides: list[str]) -> int:
    import numpy as np

    from geodiff.data.pointclouds import (
        PairConfig,
        PointCloud,
        benchmark_pairs,
        load_modelnet40_h5,
        load_tudl_models,
        procedural_mesh,
        save_pairs,
    )

    cfg = compose("data_registration", overrides)
    if not isinstance(cfg.num_pairs, int) or cfg.num_pairs <= 0:
        raise GeodiffError(f"num_pairs: must be a positive integer, got {cfg.num_pairs!r}")
    pc = PairConfig(num_points=int(cfg.num_points), max_angle=float(cfg.max_angle),
                    max_translation=float(cfg.max_translation), noise=float(cfg.noise), clip=float(cfg.clip),
                    keep=float(cfg.keep))  # fmt: skip
    if cfg.modelnet:
        mn = load_modelnet40_h5(resolve_path(cfg.modelnet), cfg.modelnet_split)
        pts = mn["points"][: cfg.num_pairs]
        nrm = mn["normals"][: cfg.num_pairs] if mn["normals"] is not None else [None] * len(pts)
        objects = [{"mesh": PointCloud(p, n, None, f"modelnet_{i}"), "unit": "unitless"}
                   for i, (p, n) in enumerate(zip(pts, nrm, strict=True))]  # fmt: skip
        source = f"modelnet40:{cfg.modelnet_split}"
    elif cfg.procedural:
        rng = np.random.default_rng([int(cfg.seed), 999])
        objects = [{"mesh": procedural_mesh(rng), "diameter": 2.0, "unit": "unitless",
                    "name": f"procedural_{i}"} for i in range(int(cfg.num_pairs))]  # fmt: skip
        source = "procedural"
    else:
        objects = [dict(o, unit="mm") for o in load_tudl_models(resolve_path(cfg.models_dir))]
        source = f"tudl:{cfg.models_dir}"
    pairs = benchmark_pairs(objects, pc, int(cfg.num_pairs), int(cfg.seed), progress=True)
    meta = {"source": source, **{k: getattr(pc, k) for k in ("num_points", "max_angle", "max_translation",
            "noise", "clip", "keep")}, "seed": int(cfg.seed)}  # fmt: skip
    out = save_pairs(cfg.output, pairs, **meta)
    print(f"{len(pairs)} pairs ({pairs[0].source.shape[0]} + {pairs[0].target.shape[0]} points) -> {out}")
    return 0


# ------------------------------------------------------------------------------------------- register
def cmd_register(overrides: list[str]) -> int:
    import json

    import numpy as np

    from geodiff.data.pointclouds import check_cloud, load_point_cloud, write_ply
    from geodiff.io import atomic_path

    cfg = compose("register", overrides)
    src = load_point_cloud(resolve_path(cfg.source))
    tgt = load_point_cloud(resolve_path(cfg.target))
    s, t = check_cloud(f"{cfg.source}", src.points), check_cloud(f"{cfg.target}", tgt.points)
    ext_s, ext_t = np.ptp(s, axis=0).max(), np.ptp(t, axis=0).max()
    if max(ext_s, ext_t) > 20 * min(ext_s, ext_t):
        raise GeodiffError(
            f"source/target: extents differ {max(ext_s, ext_t) / min(ext_s, ext_t):.0f}x "
            f"({ext_s:.4g} vs {ext_t:.4g}); mismatched units (mm vs m)?"
        )
    method = str(cfg.method)
    learned = method in ("diffusion", "one_shot")
    refine = check_count("refine_steps", cfg.get("refine_steps", 3)) if learned else None
    if learned:
        from geodiff.pipelines.registration import RegistrationPipeline

        pipe = RegistrationPipeline.from_pretrained(cfg.ckpt)
        pipe.model.to(cfg.device)
        pose = pipe(s, t, int(cfg.num_inference_steps), one_shot=method == "one_shot", seed=int(cfg.seed),
                    max_points=cfg.max_points, progress=False, refine_steps=refine).poses[0]  # fmt: skip
    elif method in ("icp_point", "icp_plane"):
        from geodiff.pipelines.icp import icp

        pose = icp(s, t, "point_to_point" if method == "icp_point" else "point_to_plane")
    else:
        raise GeodiffError(f"method: {method!r} is not one of diffusion, one_shot, icp_point, icp_plane")
    moved = s @ pose[:3, :3].T + pose[:3, 3]
    from geodiff.metrics.pose import chamfer_distance

    cd = float(chamfer_distance(moved, t)[0])
    np.set_printoptions(precision=6, suppress=True)
    print(f"transform (target ~= R source + t), {method}:\n{pose}")
    print(f"Chamfer distance after alignment: {cd:.6g} (source units)")
    if cfg.output:
        rec = {"transform": pose.tolist(), "method": method, "source": str(cfg.source),
               "target": str(cfg.target),
               "num_inference_steps": int(cfg.num_inference_steps), "chamfer": cd,
               "refine_steps": refine, "ckpt": str(cfg.ckpt) if learned else None}  # fmt: skip
        with atomic_path(cfg.output) as tmp:
            tmp.write_text(json.dumps(rec, indent=1))
        print(f"JSON {cfg.output}")
    if cfg.aligned:
        normals = src.normals @ pose[:3, :3].T if src.normals is not None else None
        print(f"PLY  {write_ply(cfg.aligned, moved, normals)}")
    if cfg.plot:
        from geodiff.pipelines.registration import plot_registration

        print(f"PNG  {plot_registration(s, t, pose, cfg.plot, title=method)}")
    return 0


# ------------------------------------------------------------------------------------------- info
def cmd_info(overrides: list[str]) -> int:
    import diffusers
    import torch

    import geodiff

    if overrides:
        raise GeodiffError(f"info takes no overrides, got {' '.join(overrides)}")

    print(f"geodiff {geodiff.__version__}  torch {torch.__version__}  diffusers {diffusers.__version__}")
    root = config_dir()
    print(f"configs: {root}")
    for group in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(f.stem for f in group.glob("*.yaml"))
        print(f"  {group.name}: {', '.join(names)}")
    return 0


COMMANDS = {
    "train": (
        cmd_train,
        "train a denoiser: geodiff train experiment=qm9_eqgat_small [trainer.max_epochs=...]",
    ),
    "schedule": (
        cmd_schedule,
        "build a scheduler from configs/scheduler/*, print, save (output=DIR), plot (plot=PNG)",
    ),
    "sample": (
        cmd_sample,
        "sample molecules or trajectories from an exported model: geodiff sample ckpt=DIR "
        "[num_samples=N | num_systems=N samples_per_system=K]",
    ),
    "evaluate": (
        cmd_evaluate,
        "metrics: geodiff evaluate [task=molecules|docking|trajectories] samples=PATH [reference=PATH] "
        "output=r.json | task=registration pairs=pairs.npz [methods=[...]]",
    ),
    "register": (
        cmd_register,
        "align two point clouds: geodiff register source=A.ply target=B.ply [ckpt=DIR] output=pose.json "
        "[aligned=A_aligned.ply] [plot=pair.png] [method=diffusion|one_shot|icp_point|icp_plane] "
        "[num_inference_steps=5] [refine_steps=3]",
    ),
    "data": (
        cmd_data,
        "make data: geodiff data nbody kind=charged|springs|gravity output=DIR | geodiff data registration "
        "[max_angle=45 noise=0 keep=1 num_pairs=200] output=pairs.npz",
    ),
    "curves": (
        cmd_curves,
        "training curves: geodiff curves runs=[outputs/a,outputs/b] [metrics=[train/loss,val/ade]] "
        "output=curves.png [summary=curves.json]",
    ),
    "info": (cmd_info, "versions and available config groups"),
}


def _parser() -> argparse.ArgumentParser:
    import geodiff

    p = argparse.ArgumentParser(
        prog="geodiff",
        description="geodiff: generative diffusion on 3D geometry (SE(3)/E(3) schedulers, equivariant "
        "denoisers for molecules, trajectories and registration).",
        epilog="Overrides use Hydra syntax, e.g.: geodiff schedule scheduler=se3_registration "
        "scheduler.num_train_timesteps=100 num_inference_steps=5 plot=se3.png",
    )
    p.add_argument("--version", action="version", version=f"geodiff {geodiff.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, helptext) in COMMANDS.items():
        sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("overrides", nargs="*", help="Hydra overrides: key=value or group=option")
        if name != "info":
            sp.add_argument(
                "--cfg", choices=["job"], help="print the composed config and exit (Hydra's --cfg job)"
            )
            sp.add_argument("-m", "--multirun", action="store_true",
                            help="not supported: run one command per value instead")  # fmt: skip
    return p


def _config_of(command: str, overrides: list[str]) -> tuple[str, list[str]]:
    """The config a command composes and the overrides it composes it with."""
    if command == "data":
        kind = overrides[0] if overrides else ""
        return ("data_registration" if kind == "registration" else "data"), overrides[1:]
    return command, overrides


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = COMMANDS[args.command][0]
    if getattr(args, "multirun", False):
        print(f"geodiff {args.command}: error: multirun (-m) is not supported: run one command per value "
              f"(for s in 0 1 2; do geodiff {args.command} seed=$s ...; done)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        if getattr(args, "cfg", None):
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(compose(*_config_of(args.command, args.overrides))), end="")
            return 0
        return handler(args.overrides)
    except GeodiffError as exc:
        print(f"geodiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # Hydra's own user errors: bad override syntax, unknown config, missing key
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException)):
            hint = " (a sweep of values: one command per value; geodiff runs no multirun)" if (
                "Ambiguous value" in str(exc)) else ""  # fmt: skip
            print(f"geodiff {args.command}: error: {first_line(exc)}{hint}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
