"""The ``geodiff`` command line: parse, compose the Hydra config (``configs/<command>.yaml``), call the
library, print. ``geodiff --help`` lists the commands (``COMMANDS``); every one takes Hydra overrides
(``key=value``, ``group=option``) and ``--cfg job``. Errors a user can cause (a bad override, a missing file,
an invalid value) print one line and exit with status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geodiff.config import (
    as_dict,
    as_list,
    compose,
    instantiate,
    resolve_checkpoint,
)
from geodiff.errors import GeodiffError, Terminated, check_count, first_line, raise_on_sigterm
from geodiff.io import check_outputs, write_json

__all__ = ["main"]

EXIT_USAGE = 2


# ------------------------------------------------------------------------------------------- schedule
def cmd_schedule(overrides: list[str]) -> int:
    from omegaconf import OmegaConf

    from geodiff.io import atomic_save_pretrained
    from geodiff.schedulers import MoleculeSchedulers
    from geodiff.schedulers.plot import describe_schedule, plot_schedule

    cfg = compose("schedule", overrides)
    sched = instantiate(cfg.scheduler)
    if isinstance(sched, MoleculeSchedulers):  # a molecule set: its position schedule sets the time axis
        print("molecule scheduler set: showing scheduler.pos (atoms, charges, bonds share its time axis)")
        sched = sched.pos
    if cfg.num_inference_steps is not None:
        sched.set_timesteps(int(cfg.num_inference_steps))
    inference = sched.timesteps if cfg.num_inference_steps is not None else None
    print(f"{type(sched).__name__}  ({OmegaConf.select(cfg, 'scheduler._target_')})")
    print("\n".join(describe_schedule(sched, inference)))
    if cfg.output:
        print(f"saved {atomic_save_pretrained(sched, cfg.output) / 'scheduler_config.json'}")
    if cfg.plot:
        print(f"plot  {plot_schedule(sched, cfg.plot, inference)}")
    return 0


# ------------------------------------------------------------------------------------------ curves
def cmd_curves(overrides: list[str]) -> int:
    from geodiff.training.curves import curves_summary, format_curves_summary, plot_runs

    cfg = compose("curves", overrides)
    metrics, smooth = as_list(cfg.metrics), check_count("smooth", cfg.smooth, minimum=1)
    logs, summary = curves_summary(as_list(cfg.runs), as_list(cfg.labels), metrics)
    lines = format_curves_summary(summary)
    if cfg.output:
        lines.append(f"plot  {plot_runs(logs, cfg.output, metrics=metrics, smooth=smooth, title=cfg.title)}")
    return _print_report(lines, cfg.summary, summary)


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
    from geodiff.pipelines.sharding import Shard

    cfg = compose("sample", overrides)
    ckpt = resolve_checkpoint(cfg.ckpt)
    shard = Shard.launch(cfg.devices, cfg.device)  # devices > 1: one process per device, rank 0 merges
    common = {"num_inference_steps": cfg.num_inference_steps, "sampler": cfg.sampler, "seed": cfg.seed,
              "batch_size": cfg.batch_size, "shard": shard}  # fmt: skip
    if (ckpt / "trajectories.json").is_file():
        from geodiff.data.datamodules import systems_for_sampling
        from geodiff.data.trajectories import collate_trajectories
        from geodiff.pipelines.trajectories import (
            TrajectoryDiffusionPipeline,
            forecast_and_score,
            format_forecast_report,
        )

        n = check_count("num_systems", cfg.num_systems, minimum=1)
        k = check_count("samples_per_system", cfg.samples_per_system, minimum=1)
        pipe = TrajectoryDiffusionPipeline.from_pretrained(ckpt).to(shard.device)
        ds = systems_for_sampling(pipe.data_info, cfg.data, cfg.split, n, int(cfg.seed))
        out = cfg.output or "samples/trajectories.npz"
        report = forecast_and_score(pipe, collate_trajectories(ds.samples), k, out, cfg.plot, ds.source,
                                    min_over=cfg.min_over, variance_type=cfg.variance_type,
                                    schedule=cfg.schedule, input_scale=cfg.input_scale, **common)  # fmt: skip
        if report is not None:  # rank 0 (or the only process)
            print("\n".join(format_forecast_report(report)))
        return 0
    from geodiff.pipelines.molecules import MoleculeDiffusionPipeline, format_sample_report, sample_and_score

    pipe = MoleculeDiffusionPipeline.from_pretrained(ckpt).to(shard.device)
    out = cfg.output or "samples/molecules.sdf"
    report = sample_and_score(pipe, out, cfg.grid, num_samples=cfg.num_samples, num_atoms=cfg.num_atoms,
                              last_step=cfg.get("last_step", "sample"), time_shift=cfg.get("time_shift"),
                              **common)  # fmt: skip
    if report is not None:
        print("\n".join(format_sample_report(report)))
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
        raise GeodiffError(f"task: {cfg.task!r} is not one of molecules, docking, trajectories, registration")
    train = resolve_checkpoint(cfg.training_set) if cfg.training_set else None
    report = evaluate_molecule_file(cfg.samples, cfg.reference or None, cfg.bonds, cfg.valence_table,
                                    cfg.reference_limit, cfg.max_atoms, train,
                                    cfg.reference_bonds)  # fmt: skip
    print(format_report(report))
    for item in report["unreadable"][:5]:
        print(f"  unreadable: {item['record']}: {item['reason']}")
    if cfg.output:
        print(f"JSON {write_report(report, cfg.output)}")
    return 0


def _print_report(lines: list[str], output: str | None, report: dict) -> int:
    """Print a report's lines, then write its JSON to ``output`` when one is given."""
    print("\n".join(lines))
    if output:
        print(f"JSON {write_json(output, report)}")
    return 0


def _evaluate_trajectories(cfg) -> int:
    from geodiff.metrics.trajectories import evaluate_trajectory_file, format_trajectory_report

    r = evaluate_trajectory_file(cfg.samples, cfg.k, cfg.min_over, cfg.reference or None, cfg.cluster,
                                 cfg.agents)  # fmt: skip
    return _print_report(format_trajectory_report(r), cfg.output, r)


def _evaluate_registration(cfg) -> int:
    from geodiff.pipelines.registration import RegistrationPipeline
    from geodiff.pipelines.registration_benchmark import format_registration_report, register_and_score

    if not cfg.pairs:
        raise GeodiffError("task=registration needs pairs=PATH (a npz from `geodiff data registration`)")
    methods = as_list(cfg.methods) or []
    learned = {"diffusion", "one_shot"} & set(methods)
    pipe = RegistrationPipeline.from_pretrained(cfg.ckpt) if learned else None
    report = register_and_score(cfg.pairs, methods, pipe, int(cfg.num_inference_steps), int(cfg.seed),
                                cfg.get("refine_steps", 3), cfg.get("inference", "geodiff"))  # fmt: skip
    report["ckpt"] = str(cfg.ckpt) if pipe else None
    return _print_report(format_registration_report(report), cfg.output, report)


def _evaluate_docking(cfg) -> int:
    from geodiff.metrics.docking import dock_file, docking_box, format_docking_report

    if not cfg.receptor:
        raise GeodiffError("task=docking needs receptor=PATH (.pdbqt or .pdb)")
    box = docking_box(cfg.ligand, cfg.center, cfg.box, cfg.size)
    pose_dir = cfg.pose_dir or (str(Path(cfg.output).with_suffix("")) + "_poses" if cfg.output else None)
    report = dock_file(cfg.samples, cfg.receptor, box, mode=cfg.mode, exhaustiveness=int(cfg.exhaustiveness),
                       num_poses=int(cfg.num_poses), seed=cfg.vina_seed, processes=cfg.processes,
                       timeout=float(cfg.timeout), pose_dir=pose_dir,
                       posebusters=bool(cfg.get("posebusters")))  # fmt: skip
    return _print_report(format_docking_report(report), cfg.output, report)


def cmd_equivariance(overrides: list[str]) -> int:
    from geodiff.testing import nero as eq

    cfg = compose("equivariance", overrides)
    r = eq.equivariance_report(**{k: v for k, v in as_dict(cfg).items() if k not in ("output", "plot")})
    plot = [f"plot  {eq.plot_equivariance(r, cfg.plot)}"] if cfg.plot else []
    return _print_report(eq.format_equivariance_report(r) + plot, cfg.output, r)


# ------------------------------------------------------------------------------------------- data
DATA_CONFIGS = {"nbody": "data", "molecules": "data_molecules", "registration": "data_registration"}


def cmd_data(overrides: list[str]) -> int:
    kind = overrides[0] if overrides else ""
    if kind not in DATA_CONFIGS:
        raise GeodiffError("usage: geodiff data nbody|molecules|registration [key=value ...]")
    cfg = compose(DATA_CONFIGS[kind], overrides[1:])
    if kind == "molecules":
        from geodiff.data.cache import build_cache, describe_cache

        index = build_cache(cfg.input, cfg.output, cfg.format, as_list(cfg.atoms), cfg.conformers,
                            tuple(cfg.fractions), int(cfg.seed), cfg.shard_size, cfg.kekulize)  # fmt: skip
        print(describe_cache(index, cfg.output))
    elif kind == "registration":
        from geodiff.data.pairs import PairConfig, make_benchmark_pairs, save_pairs

        lengths = ("max_angle", "max_translation", "noise", "clip", "keep")
        pc = PairConfig(**{k: float(cfg[k]) for k in lengths}, num_points=int(cfg.num_points))
        src = "modelnet" if cfg.modelnet else "procedural" if cfg.procedural else "tudl"
        where = {"modelnet": cfg.modelnet, "procedural": None, "tudl": cfg.models_dir}[src]
        n = check_count("num_pairs", cfg.num_pairs, minimum=1)
        pairs, meta = make_benchmark_pairs(src, where, pc, n, int(cfg.seed), cfg.modelnet_split)
        out = save_pairs(cfg.output, pairs, **meta)
        print(f"{len(pairs)} pairs ({pairs[0].source.shape[0]} + {pairs[0].target.shape[0]} points) -> {out}")
    else:
        from geodiff.data.trajectories import generate_nbody_split

        c, out = cfg, Path(cfg.output or f"data/nbody_{cfg.kind}")
        generate_nbody_split(out, c.kind, c.num_train, c.num_val, c.num_test, c.seed, c.num_particles)
    return 0


# ------------------------------------------------------------------------------------------- register
def cmd_register(overrides: list[str]) -> int:
    from geodiff.pipelines.registration import RegistrationPipeline, register_files, write_registration

    cfg = compose("register", overrides)
    learned = cfg.method in ("diffusion", "one_shot")
    pipe = RegistrationPipeline.from_pretrained(cfg.ckpt).to(cfg.device) if learned else None
    r = register_files(cfg.source, cfg.target, cfg.method, pipe, int(cfg.num_inference_steps), int(cfg.seed),
                       cfg.get("refine_steps", 3), cfg.max_points)  # fmt: skip
    r["ckpt"] = str(cfg.ckpt) if learned else None
    print("\n".join(write_registration(r, cfg.output, cfg.aligned, cfg.plot)))
    return 0


# ------------------------------------------------------------------------------------------- info
def cmd_info(overrides: list[str]) -> int:
    from geodiff.config import install_summary  # fmt: skip

    if overrides:
        raise GeodiffError(f"info takes no overrides, got {' '.join(overrides)}")
    print("\n".join(install_summary()))
    return 0


COMMANDS = {  # name: (handler, help)
    "train": (cmd_train, "train a denoiser: geodiff train experiment=qm9_eqgat_small [key=value ...]"),
    "schedule": (cmd_schedule, "print, save (output=DIR) and plot (plot=PNG) a scheduler config"),
    "sample": (cmd_sample, "sample molecules or trajectories: geodiff sample ckpt=NAME_OR_DIR"),
    "evaluate": (cmd_evaluate, "metrics: geodiff evaluate task=molecules|docking|trajectories|registration"),
    "register": (cmd_register, "align two point clouds: geodiff register source=A.ply target=B.ply"),
    "data": (cmd_data, "make data: geodiff data nbody kind=charged | geodiff data registration"),
    "equivariance": (cmd_equivariance, "orbit sweep of a model's symmetries: geodiff equivariance ckpt=NAME"),
    "curves": (cmd_curves, "training curves: geodiff curves runs=[outputs/a,outputs/b] output=curves.png"),
    "info": (cmd_info, "versions, config groups and shipped models"),
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
            sp.add_argument("--cfg", choices=["job"], help="print the composed config and exit")
            sp.add_argument("-m", "--multirun", action="store_true",
                            help="not supported: run one command per value instead")  # fmt: skip
    return p


def _config_of(command: str, overrides: list[str]) -> tuple[str, list[str]]:
    """The config a command composes and the overrides it composes it with."""
    if command == "data":
        return DATA_CONFIGS.get(overrides[0] if overrides else "", "data"), overrides[1:]
    return command, overrides


OUTPUTS = ("output", "grid", "plot", "aligned", "summary")  # the files commands write, and what they read
INPUTS = ("samples", "reference", "source", "target", "pairs", "receptor", "ligand", "input", "ckpt", "data")


def _check_paths(command: str, overrides: list[str]) -> None:
    """Output files checked before any work: writable, not folders, not inputs (others write folders)."""
    if command not in ("train", "data", "info", "schedule"):
        paths = {k: v for k, v in compose(command, overrides).items() if isinstance(v, str)}
        check_outputs({k: paths.get(k) for k in OUTPUTS}, {k: paths.get(k) for k in INPUTS})


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = COMMANDS[args.command][0]
    raise_on_sigterm()
    if getattr(args, "multirun", False):
        print(f"geodiff {args.command}: error: multirun (-m) is not supported: run one command per value "
              f"(for s in 0 1 2; do geodiff {args.command} seed=$s ...; done)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        if getattr(args, "cfg", None):
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(compose(*_config_of(args.command, args.overrides))), end="")
            return 0
        _check_paths(args.command, args.overrides)
        return handler(args.overrides)
    except GeodiffError as exc:
        print(f"geodiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, Terminated) as exc:  # workers stopped, temporary files removed on the way
        stop = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"geodiff {args.command}: {stop[0]}", file=sys.stderr)
        return stop[1]
    except Exception as exc:  # Hydra's user errors (bad override, unknown config) and what the output checks
        from hydra.errors import HydraException  # could not foresee (OSError: a full disk)
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException, OSError)):
            hint = " (a sweep of values: one command per value; geodiff runs no multirun)" if (
                "Ambiguous value" in str(exc)) else ""  # fmt: skip
            print(f"geodiff {args.command}: error: {first_line(exc)}{hint}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
