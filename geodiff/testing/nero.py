"""How equivariant is a trained model in practice: orbit sweeps of an exported denoiser (NERO, "Evaluating
Machine Learning Models with NERO: Non-Equivariance Revealed on Orbits"; ``geodiff equivariance``).

For an export of any family, on real inputs from the model's own data at several diffusion times:

* **the denoiser's equivariance error** under rotations on a grid over SO(3) (axes on a Fibonacci sphere x
  angles; SO(2) angles for 2D models), reflections (the same grid composed with a mirror), translations and
  node permutations, in float32 and float64; the error is the largest absolute difference between
  ``f(g x)`` and ``g f(x)`` over all outputs, set beside the precision's own level: for float32, the
  largest difference between the model's float32 and float64 outputs on the same inputs (its round-off,
  with no transformation); for float64, that times eps64 / eps32;
* **the task metric along the orbit** (the NERO plot): molecules, the denoising loss (x0 position error
  and atom-type cross-entropy) of inputs rotated by each grid rotation; trajectories, the ADE/FDE of
  deterministic forecasts (DDIM, eta 0, or the flow's Euler steps) from rotated observations with the
  initial noise rotated alike, and how far each forecast is from the rotated forecast of the unrotated
  input ("do rotated conditions give rotated samples?"); registration, the rotation error of the
  registered pose when the source is rotated by each grid rotation (ground truth moved alike).

Registration poses are proper rotations by construction (Procrustes), so reflections do not apply there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geodiff.config import recorded_data_path, resolve_checkpoint
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.testing.equivariance import Transform, mirror, rotation_grid, transform_errors

__all__ = [
    "SYMMETRIES",
    "plot_orbit_comparison",
    "equivariance_report",
    "format_equivariance_report",
    "plot_equivariance",
    "export_family",
]

SYMMETRIES = ("rotation", "reflection", "translation", "permutation")
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
FAMILIES = ("molecules", "trajectories", "registration")


@dataclass
class Probe:
    """A denoiser call on real inputs: ``func(*inputs)`` with the kinds of
    :func:`geodiff.testing.assert_equivariant`; ``node_count`` nodes may be permuted (0: no permutation)."""

    func: Callable
    inputs: list
    input_kinds: list
    output_kinds: object
    dim: int
    node_count: int
    symmetries: tuple[str, ...] = SYMMETRIES


def export_family(directory: str | os.PathLike) -> str:
    """``molecules``, ``trajectories`` or ``registration``: which record an export folder carries."""
    d = Path(directory)
    for family in FAMILIES:
        if (d / f"{family}.json").is_file():
            return family
    raise GeodiffError(f"{d}: not an exported geodiff model with positions to transform (no molecules.json, "
                       "trajectories.json or registration.json)")  # fmt: skip


def _cast(model, dtype):
    """``model`` in ``dtype`` (``double()``/``float()``: diffusers' ``to(dtype)`` warns needlessly)."""
    return model.double() if dtype == torch.float64 else model.float()


def _load(directory: Path, family: str):
    if family == "molecules":
        from geodiff.pipelines.molecules import MoleculeDiffusionPipeline as P
    elif family == "trajectories":
        from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline as P
    else:
        from geodiff.pipelines.registration import RegistrationPipeline as P
    return P.from_pretrained(directory)


# --------------------------------------------------------------------------------------------- data
def _molecule_batch(pipe, data: str | None, num: int, seed: int):
    """``num`` real molecules: from ``data`` (QM9 npz, SDF, XYZ folder) or, without one, ``$GEODIFF_DATA``'s
    QM9 file; else RDKit conformers (ETKDG, ``seed``) of small molecules in the model's vocabulary."""
    import tempfile

    from geodiff.data.molecules import MoleculeDataset, collate_molecules, mol_to_record

    path = Path(data) if data else Path(os.environ.get("GEODIFF_DATA", "data")) / "qm9" / "test.npz"
    if data and not path.exists():
        raise GeodiffError(f"data: {path} does not exist")
    if path.is_file() and path.suffix == ".npz":
        with tempfile.TemporaryDirectory() as tmp:
            ds = MoleculeDataset.from_qm9_npz(path, cache_dir=tmp, limit=num, num_workers=1, progress=False)
        return collate_molecules([ds[i] for i in range(min(num, len(ds)))]), f"{path} (first {num})"
    if data:
        from geodiff.data.structures import read_molecules, to_rdkit

        mols = [to_rdkit(m) for _, m in zip(range(num), read_molecules(path), strict=False)]
        source = f"{path} (first {len(mols)})"
    else:
        from rdkit import Chem
        from rdkit.Chem import AllChem

        smiles = ("CCO", "CC(=O)N", "c1ccncc1", "OC1CC1C#N", "CC(C)(C)O", "O=C1CCCN1", "FC(F)C=O", "NC(=O)CO")
        mols = []
        for smi in smiles[:num]:
            m = Chem.AddHs(Chem.MolFromSmiles(smi))
            AllChem.EmbedMolecule(m, randomSeed=seed)
            Chem.Kekulize(m, clearAromaticFlags=True)
            mols.append(m)
        source = f"RDKit conformers (ETKDG, seed {seed}) of {', '.join(smiles[:num])}"
    records = [mol_to_record(m, pipe.vocab) for m in mols]
    if not records:
        raise GeodiffError(f"data: no molecule could be read from {path}")
    return collate_molecules(records), source


def _trajectory_batch(pipe, data: str | None, num: int, seed: int):
    from geodiff.data.datamodules import systems_for_sampling
    from geodiff.data.trajectories import collate_trajectories

    ds = systems_for_sampling(pipe.data_info, data, "test", num, seed)
    return collate_trajectories(ds.samples[:num]), ds.source


def _registration_pairs(pipe, data: str | None, num: int, seed: int):
    from geodiff.data.pairs import PairConfig, load_pairs, make_benchmark_pairs

    if data and str(data).endswith(".npz"):
        pairs, meta = load_pairs(data)
        return pairs[:num], f"{data} (first {num})"
    where = data or pipe.info.get("models_dir")
    if not data and where:
        where = str(recorded_data_path(where))  # recorded on the machine that trained it
    config = PairConfig(num_points=pipe.num_points)
    if where and Path(where).is_dir():
        pairs, meta = make_benchmark_pairs("tudl", where, config, num, seed)
    else:
        pairs, meta = make_benchmark_pairs("procedural", None, config, num, seed)
    return pairs, f"{meta['source']} ({num} pairs, seed {seed})"


# --------------------------------------------------------------------------------------------- probes
def _molecule_probe(pipe, batch, t: int, dtype, seed: int) -> Probe:
    from geodiff.training.molecules import noisy_molecules

    model = _cast(pipe.model, dtype)
    b = type(batch)(**{k: (v.double() if v.is_floating_point() else v) for k, v in batch.__dict__.items()})
    T = pipe.schedulers.num_train_timesteps
    tt = torch.full((b.num_graphs,), int(t))
    # drawn in float64 and cast, so both precisions see the same inputs
    noisy = noisy_molecules(b, pipe.schedulers, tt, torch.Generator().manual_seed(seed))
    noisy = {k: v.to(dtype) for k, v in noisy.items()}
    tn = (tt.to(dtype) + 1) / T

    def run(pos, atoms, charges, bonds, batch_, edge_index):
        out = model(pos, atoms, charges, bonds, tn, batch_, edge_index)
        return out["pos"], out["atoms"], out["charges"], out["bonds"]

    inputs = [noisy["pos"], noisy["atoms"], noisy["charges"], noisy["bonds"], b.batch, b.edge_index]
    kinds = ["node_position", "node_scalar", "node_scalar", "invariant", "node_index", "edge_index"]
    return Probe(run, inputs, kinds, ["node_vector", "node_scalar", "node_scalar", "invariant"], 3,
                 batch.pos.shape[0])  # fmt: skip


def _trajectory_probe(pipe, batch, t: int, dtype, seed: int) -> Probe:
    model = _cast(pipe.model, dtype)
    c = model.config
    g = torch.Generator().manual_seed(seed)
    x = batch.x.to(dtype)
    h, ea = batch.h.to(dtype), batch.edge_attr.to(dtype)
    sched = pipe.scheduler
    tt = torch.full((batch.num_graphs,), int(t))
    key = model.output_key
    out_kind = "node_vector" if key == "eps" else "node_position"
    if model.conditional:
        x_cond, x0 = x[:, : c.num_cond], x[:, c.num_cond : c.num_cond + c.num_target]
        with torch.no_grad():
            x_r = model.prior(x_cond, h, batch.edge_index, ea, batch.batch, batch.num_graphs)
        noise = torch.randn(x0.shape, generator=g, dtype=torch.float64).to(dtype)
        x_t = x_r + sched.add_noise(x0 - x_r, noise, tt, batch=batch.batch)

        def run(x_cond, x_t, h_, batch_, edge_index):
            out = model(x_t, tt, h_, edge_index, ea, batch_, x_cond=x_cond)[key]
            return out, model.prior(x_cond, h_, edge_index, ea, batch_, batch.num_graphs)

        inputs = [x_cond, x_t, h, batch.batch, batch.edge_index]
        kinds = ["node_position", "node_position", "node_scalar", "node_index", "edge_index"]
        return Probe(run, inputs, kinds, [out_kind, "node_position"], c.dim, x.shape[0])
    x0 = x[:, : c.num_target]
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64).to(dtype)
    x_t = sched.add_noise(x0, noise, tt, batch=batch.batch)

    def run_uncond(x_t, h_, batch_, edge_index):
        return model(x_t, tt, h_, edge_index, ea, batch_)[key]

    kinds = ["node_position", "node_scalar", "node_index", "edge_index"]
    return Probe(run_uncond, [x_t, h, batch.batch, batch.edge_index], kinds, out_kind, c.dim, x.shape[0])


def _registration_probe(pipe, pairs, t: int, dtype, seed: int) -> Probe:
    """Transformations act on the target (and the current pose): the predicted pose moves with them
    (``G H``); a permutation of the target's points changes nothing but the matching."""
    from geodiff.manifolds import se3
    from geodiff.models.registration import normalize_pair

    model = _cast(pipe.model, dtype)
    n = min(len(p.source) for p in pairs)
    m = min(len(p.target) for p in pairs)
    src = torch.as_tensor(np.stack([p.source[:n] for p in pairs]), dtype=dtype)
    tgt = torch.as_tensor(np.stack([p.target[:m] for p in pairs]), dtype=dtype)
    s, tg, *_ = normalize_pair(src, tgt)
    g = torch.Generator().manual_seed(seed)
    pose = se3.random_pose((len(pairs),), 0.5, g, torch.float64).to(dtype)
    tt = torch.full((len(pairs),), int(t))

    def target_kind(x, tr):
        y = x @ tr.Q.to(x.dtype).T + tr.t.to(x.dtype)
        return y if tr.perm is None else y[:, tr.perm]

    def run(target, pose_):
        out = model(s, target, pose_, tt)
        return out["pose"], out["weights"]

    return Probe(run, [tg, pose], [target_kind, "pose"], ["pose", "invariant"], 3, m,
                 ("rotation", "translation", "permutation"))  # fmt: skip


# --------------------------------------------------------------------------------------------- sweeps
def _transforms(symmetry: str, probe: Probe, grid, count: int, seed: int) -> list[Transform]:
    d = probe.dim
    rot = grid[0].to(torch.float64)
    zero = torch.zeros(d, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    if symmetry == "rotation":
        return [Transform(q, zero, None) for q in rot]
    if symmetry == "reflection":
        return [Transform(q @ mirror(d), zero, None) for q in rot]
    eye = torch.eye(d, dtype=torch.float64)
    if symmetry == "translation":
        shifts = 3 * torch.randn(count, d, generator=g, dtype=torch.float64)
        return [Transform(eye, shift, None) for shift in shifts]
    return [Transform(eye, zero, torch.randperm(probe.node_count, generator=g)) for _ in range(count)]


def _outputs(probe: Probe) -> list[torch.Tensor]:
    out = probe.func(*probe.inputs)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.detach().double() for o in outs if o.is_floating_point()]


def _roundoff(probe_of, pipe, inputs, t: int, seed: int) -> float:
    """The float32 round-off of the model itself: the largest difference between its float32 and float64
    outputs on the same inputs (built from the same seed), no transformation involved."""
    with torch.no_grad():
        a = _outputs(probe_of(pipe, inputs, t, torch.float32, seed))
        b = _outputs(probe_of(pipe, inputs, t, torch.float64, seed))
    return max(float((x - y).abs().max()) if x.numel() else 0.0 for x, y in zip(a, b, strict=True))


def equivariance_report(ckpt: str | os.PathLike, data: str | None = None, num_axes: int = 12,
                        num_angles: int = 8, times: tuple[float, ...] = (0.1, 0.5, 0.9),
                        num_items: int = 8, num_transforms: int = 4, task: bool = True,
                        task_axes: int = 6, task_angles: int = 4, task_steps: int = 20,
                        symmetries: tuple[str, ...] = SYMMETRIES, seed: int = 0) -> dict:  # fmt: skip
    """The orbit sweep of an export (see the module docstring) as a JSON-able dict.

    Args:
        ckpt: a shipped name or an export folder.
        data: where the real inputs come from (default: the model's own data, as sampling finds it).
        num_axes, num_angles: the rotation grid of the denoiser sweep (2D models: ``num_angles`` angles).
        times: diffusion times as fractions of the training steps.
        num_items: molecules, systems or pairs in the input batch.
        num_transforms: random translations and permutations per time.
        task, task_axes, task_angles, task_steps: the NERO task sweep (its grid and sampling steps).
        symmetries: which of ``rotation``, ``reflection``, ``translation``, ``permutation`` to sweep.
    """
    unknown = [s for s in symmetries if s not in SYMMETRIES]
    if unknown or not symmetries:
        bad = unknown[0] if unknown else "(none)"
        known = ", ".join(SYMMETRIES)
        raise GeodiffValueError(f"symmetries: unknown group {bad!r}; expected some of {known}")
    for name, value, least in (("num_axes", num_axes, 1), ("num_angles", num_angles, 1),
                               ("num_items", num_items, 1), ("num_transforms", num_transforms, 1),
                               ("task_axes", task_axes, 1), ("task_angles", task_angles, 1),
                               ("task_steps", task_steps, 1)):  # fmt: skip
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise GeodiffValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if not times or any(not (0.0 <= float(f) <= 1.0) for f in times):
        raise GeodiffValueError(f"times: expected fractions in [0, 1], got {list(times)}")
    directory = resolve_checkpoint(ckpt)
    family = export_family(directory)
    pipe = _load(directory, family)
    if family == "molecules":
        inputs, source = _molecule_batch(pipe, data, num_items, seed)
        T, probe_of = pipe.schedulers.num_train_timesteps, _molecule_probe
    elif family == "trajectories":
        inputs, source = _trajectory_batch(pipe, data, num_items, seed)
        T, probe_of = pipe.scheduler.config.num_train_timesteps, _trajectory_probe
    else:
        inputs, source = _registration_pairs(pipe, data, num_items, seed)
        T, probe_of = pipe.scheduler.config.num_train_timesteps, _registration_probe
    steps = sorted({min(T - 1, int(round(f * (T - 1)))) for f in times})
    report: dict = {"model": str(ckpt), "family": family, "class": type(pipe.model).__name__,
                    "data": source, "timesteps": steps, "num_train_timesteps": T}  # fmt: skip
    dim = probe_of(pipe, inputs, steps[0], torch.float64, seed).dim
    grid = rotation_grid(num_axes, num_angles, dim)
    report["grid"] = {"dim": dim, "num_axes": num_axes if dim == 3 else 1, "num_angles": num_angles,
                      "axes": grid[1].tolist(), "angles": grid[2].tolist()}  # fmt: skip
    precisions: dict = {}
    orbit: dict = {}
    level32 = max(_roundoff(probe_of, pipe, inputs, t, seed + k) for k, t in enumerate(steps))
    eps_ratio = torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps
    for pname, dtype in PRECISIONS.items():
        per_sym: dict = {}
        level = level32 if dtype == torch.float32 else level32 * eps_ratio
        orbit_err = torch.zeros(len(grid[2]), dtype=torch.float64)
        with torch.no_grad():
            for k, t in enumerate(steps):
                probe = probe_of(pipe, inputs, t, dtype, seed + k)
                for sym in symmetries:
                    if sym not in probe.symmetries:
                        per_sym.setdefault(sym, None)
                        continue
                    trs = _transforms(sym, probe, grid, num_transforms, seed + 100 * k)
                    errs = transform_errors(probe.func, probe.inputs, probe.input_kinds, probe.output_kinds,
                                            trs)  # fmt: skip
                    e = torch.stack(list(errs.values())).amax(0)  # worst output per transform
                    if sym == "rotation":
                        orbit_err = torch.maximum(orbit_err, e)
                    acc = per_sym.get(sym) or {"errors": []}
                    acc["errors"].extend(e.tolist())
                    per_sym[sym] = acc
        summary = {}
        for sym, acc in per_sym.items():
            if acc is None:
                summary[sym] = None
                continue
            e = torch.tensor(acc["errors"], dtype=torch.float64)
            summary[sym] = {"max": float(e.max()), "median": float(e.median()), "count": len(acc["errors"])}
        precisions[pname] = {"level": level, **summary}
        orbit[pname] = orbit_err.tolist()
    _cast(pipe.model, torch.float32)
    report["precisions"], report["orbit_rotation_error"] = precisions, orbit
    if task:
        report["task"] = _task_sweep(family, pipe, inputs, dim, task_axes, task_angles, task_steps, seed)
    return report


# --------------------------------------------------------------------------------------------- task sweep
def _task_sweep(family, pipe, inputs, dim, axes, angles, steps, seed) -> dict:
    rot, ax, ang = rotation_grid(axes, angles, dim)
    rot = torch.cat([torch.eye(dim, dtype=rot.dtype).unsqueeze(0), rot])  # the identity first
    if family == "molecules":
        values = _molecule_task(pipe, inputs, rot, seed)
    elif family == "trajectories":
        values = _trajectory_task(pipe, inputs, rot, steps, seed)
    else:
        values = _registration_task(pipe, inputs, rot, seed)
    return {"axes": ax.tolist(), "angles": ang.tolist(), **values}


def _molecule_task(pipe, batch, rot, seed) -> dict:
    """Denoising loss at t = T/2 of inputs rotated by each grid rotation (the x0 position error measured in
    the rotated frame and the atom-type cross-entropy)."""
    import torch.nn.functional as F

    from geodiff.training.molecules import noisy_molecules

    model = _cast(pipe.model, torch.float32)
    T = pipe.schedulers.num_train_timesteps
    tt = torch.full((batch.num_graphs,), T // 2)
    noisy = noisy_molecules(batch, pipe.schedulers, tt, torch.Generator().manual_seed(seed))
    tn = (tt.float() + 1) / T
    pos_err, ce = [], []
    with torch.no_grad():
        for q in rot.float():
            out = model(noisy["pos"] @ q.T, noisy["atoms"], noisy["charges"], noisy["bonds"], tn, batch.batch,
                        batch.edge_index)  # fmt: skip
            pos_err.append(float(((out["pos"] - noisy["x0"] @ q.T) ** 2).sum(-1).mean()))
            ce.append(float(F.cross_entropy(out["atoms"], batch.atom_types)))
    return {"metric": "denoising position MSE (A^2) at t = T/2", "timestep": T // 2, "identity": pos_err[0],
            "values": pos_err[1:], "atom_ce_identity": ce[0], "atom_ce": ce[1:]}  # fmt: skip


def _trajectory_task(pipe, batch, rot, steps, seed) -> dict:
    """Deterministic forecasts (DDIM eta 0, or the flow's own steps) from rotated observations with the
    initial noise rotated alike: ADE/FDE against the rotated truth and the distance to the rotated forecast
    of the unrotated input."""
    from geodiff.metrics.trajectories import displacement_errors
    from geodiff.schedulers import E3DDPMScheduler

    model = _cast(pipe.model, torch.float32)
    c = model.config
    if not model.conditional:
        return {"metric": "n/a: an unconditional model has no conditions to rotate"}
    sampler = "ddim" if isinstance(pipe.scheduler, E3DDPMScheduler) else None
    sched = pipe.sampling_scheduler(sampler, steps)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch.x.shape[0], c.num_target, c.dim), generator=g)
    truth = batch.x[:, c.num_cond : c.num_cond + c.num_target].float()
    base = None
    ade, fde, drift = [], [], []
    for q in rot.float():
        b = type(batch)(batch.x.float() @ q.T, batch.h, batch.edge_index, batch.edge_attr, batch.batch,
                        batch.num_graphs)  # fmt: skip
        pred = pipe._run(b, sched, steps, None, progress=False, noise=noise @ q.T)
        back = pred @ q  # in the unrotated frame
        err = displacement_errors(back.unsqueeze(0), truth)
        ade.append(float(err["ade"]))
        fde.append(float(err["fde"]))
        base = back if base is None else base
        drift.append(float((back - base).abs().max()))
    return {"metric": f"ADE of deterministic forecasts ({type(sched).__name__}, {steps} steps)",
            "identity": ade[0], "values": ade[1:], "fde_identity": fde[0], "fde": fde[1:],
            "sample_equivariance_error": drift[1:]}  # fmt: skip


def _registration_task(pipe, pairs, rot, seed) -> dict:
    """Rotation error (degrees) of the registered pose when each source is rotated by a grid rotation
    about its centroid (the ground truth composed with the inverse rotation); the first two pairs only (a
    full registration per pair and rotation: seconds each on a CPU)."""
    from geodiff.metrics.pose import rotation_error_deg

    pairs = pairs[:2]
    errs = []
    for q in rot.double().numpy():
        src, gts = [], []
        for p in pairs:
            c = p.source.mean(0)
            src.append((p.source - c) @ q.T + c)
            g = np.eye(4)
            g[:3, :3], g[:3, 3] = q, c - q @ c  # x -> q (x - c) + c
            gts.append(p.pose @ np.linalg.inv(g))
        out = pipe(src, [p.target for p in pairs], seed=seed, progress=False)
        errs.append(float(np.mean(rotation_error_deg(out.poses, np.stack(gts)))))
    return {"metric": f"mean rotation error (deg) of geodiff's default registration, {len(pairs)} pairs",
            "identity": errs[0], "values": errs[1:]}  # fmt: skip


# --------------------------------------------------------------------------------------------- output
def format_equivariance_report(r: dict) -> list[str]:
    """One line per symmetry and precision, then the task sweep's spread."""
    g = r["grid"]
    grid = f"{g['num_axes']} axes x {g['num_angles']} angles"
    grid = f"{g['num_angles']} angles" if g["dim"] == 2 else grid
    lines = [f"{r['model']} ({r['class']}, {r['family']}): {r['data']}",
             f"diffusion steps {r['timesteps']} of {r['num_train_timesteps']}; {grid}"]  # fmt: skip
    for sym in SYMMETRIES:
        parts = []
        for pname, p in r["precisions"].items():
            s = p.get(sym)
            parts.append(f"{pname} max {s['max']:.2e} median {s['median']:.2e} (level {p['level']:.1e})"
                         if s else f"{pname} n/a")  # fmt: skip
        lines.append(f"  {sym:<12} " + " | ".join(parts))
    t = r.get("task")
    if t and "values" in t:
        v = np.asarray(t["values"])
        lines.append(f"  task: {t['metric']}: identity {t['identity']:.4g}, orbit min {v.min():.4g} "
                     f"max {v.max():.4g} (spread {v.max() - v.min():.2g})")  # fmt: skip
        if "sample_equivariance_error" in t:
            lines.append(f"  rotated conditions -> rotated samples: max deviation "
                         f"{max(t['sample_equivariance_error']):.2e}")  # fmt: skip
    elif t:
        lines.append(f"  task: {t['metric']}")
    return lines


def _orbit_panel(fig, ax, dim, axes, angles, values, label, log):
    """One NERO panel: 2D models, the value against the rotation angle (polar); 3D models, each grid axis on
    (azimuth, elevation) coloured by the largest value over its angles (log10 when ``log``)."""
    values = np.asarray(values, dtype=float)
    if dim == 2:  # a closed curve from the centre: a circle is invariance
        order = np.argsort(angles)
        ang, val = np.asarray(angles, dtype=float)[order], values[order]
        ax.plot(np.append(ang, ang[0]), np.append(val, val[0]), "o-", ms=3)
        ax.set_ylim(0, 1.1 * max(float(val.max()), 1e-300))
        ax.set_title(label, fontsize=9)
        return
    a = np.asarray(axes)
    n_ang = len(set(np.round(angles, 9)))
    per_axis = values.reshape(-1, n_ang).max(1)
    az = np.degrees(np.arctan2(a[::n_ang, 1], a[::n_ang, 0]))
    el = np.degrees(np.arcsin(np.clip(a[::n_ang, 2], -1, 1)))
    shown = np.log10(np.maximum(per_axis, 1e-300)) if log else per_axis
    sc = ax.scatter(az, el, c=shown, s=120, cmap="viridis")
    fig.colorbar(sc, ax=ax, label=("log10 " if log else "") + "max over angles")
    ax.set_xlabel("axis azimuth (deg)")
    ax.set_ylabel("axis elevation (deg)")
    ax.set_title(label, fontsize=9)


def _task_panel(fig, ax, dim, t: dict, prefix: str = "") -> None:
    """The task metric on the orbit: 2D, its value against the angle with the unrotated one at 0 (a circle
    when invariant); 3D, its change from the unrotated value per grid axis."""
    if dim == 2:
        angles, values = [0.0, *t["angles"]], [t["identity"], *t["values"]]
        title = f"{prefix}{t['metric']}\non the orbit (unrotated {t['identity']:.4g})"
        _orbit_panel(fig, ax, dim, t["axes"], angles, values, title, log=False)
        return
    shift = np.asarray(t["values"]) - t["identity"]
    title = f"{prefix}{t['metric']}\nminus unrotated ({t['identity']:.4g})"
    _orbit_panel(fig, ax, dim, t["axes"], t["angles"], shift, title, log=False)


def plot_orbit_comparison(reports: dict[str, dict], path: str | os.PathLike) -> Path:
    """NERO plots of several models side by side (e.g. equivariant, plain, frame-averaged): one row each,
    the denoiser's float32 rotation error on the orbit and the task metric's change along it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import atomic_path

    fig = plt.figure(figsize=(11, 3.8 * len(reports)))
    for row, (label, r) in enumerate(reports.items()):
        g, t = r["grid"], r.get("task") or {}
        polar = "polar" if g["dim"] == 2 else None
        ax = fig.add_subplot(len(reports), 2, 2 * row + 1, projection=polar)
        _orbit_panel(fig, ax, g["dim"], g["axes"], g["angles"], r["orbit_rotation_error"]["float32"],
                     f"{label}: denoiser rotation error (float32)", log=True)  # fmt: skip
        ax = fig.add_subplot(len(reports), 2, 2 * row + 2, projection=polar)
        if "values" in t:
            _task_panel(fig, ax, g["dim"], t, label + ": ")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def plot_equivariance(r: dict, path: str | os.PathLike) -> Path:
    """The NERO figure: rotation error of the denoiser on the orbit (float32 and float64), the task
    metric on the orbit, and each symmetry's worst error beside its precision level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import atomic_path

    g = r["grid"]
    t = r.get("task") or {}
    fig = plt.figure(figsize=(15, 4.6))
    ax_err = fig.add_subplot(1, 3, 1, projection="polar" if g["dim"] == 2 else None)
    ax_task = fig.add_subplot(1, 3, 2, projection="polar" if g["dim"] == 2 else None)
    ax_bar = fig.add_subplot(1, 3, 3)

    _orbit_panel(fig, ax_err, g["dim"], g["axes"], g["angles"], r["orbit_rotation_error"]["float32"],
                 "denoiser rotation error, float32", log=True)  # fmt: skip
    if "values" in t:
        _task_panel(fig, ax_task, g["dim"], t)
    else:
        ax_task.set_axis_off()
        ax_task.text(0.5, 0.5, t.get("metric", "no task sweep"), ha="center", wrap=True)
    syms = [s for s in SYMMETRIES if any(p.get(s) for p in r["precisions"].values())]
    width = 0.38
    # exact zeros (a graph network's permutations) drawn at 1e-3 x the finest precision level, not at 1e-300
    floor = 1e-3 * min(max(p["level"], 1e-300) for p in r["precisions"].values())
    for k, (pname, p) in enumerate(r["precisions"].items()):
        vals = [max(p[s]["max"], floor) if p.get(s) else np.nan for s in syms]
        x = np.arange(len(syms)) + (k - 0.5) * width
        ax_bar.bar(x, vals, width, label=f"{pname} (level {p['level']:.0e})")
        ax_bar.axhline(max(p["level"], 1e-300), ls="--", lw=0.8, color=f"C{k}")
    ax_bar.set_yscale("log")
    ax_bar.set_xticks(np.arange(len(syms)), syms)
    ax_bar.set_ylabel("max |f(g x) - g f(x)|")
    ax_bar.legend(fontsize=8)
    fig.suptitle(f"{r['model']} ({r['class']})", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
