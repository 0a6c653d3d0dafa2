"""AutoDock Vina docking of molecules against a protein pocket (``vina`` Python package; ligands and
receptors prepared with RDKit + meeko; no openbabel).

    box = DockingBox.from_ligand("1iep_ligand.sdf")             # centre of the ligand, 20 A cube
    results, summary = dock_molecules(mols, "1iep_receptor.pdbqt", box, mode="dock", exhaustiveness=8)

Modes: ``score_only`` (the pose as generated), ``local_only`` (local optimisation of that pose) and ``dock``
(global search: exhaustiveness, number of poses, seed). The box is one for all ligands, or centred on each
ligand (``box="each"``, the EQGAT-diff / DiffSBDD protocol for generated ligands in a pocket).

Molecules are docked in a process pool sized to the machine (Vina's own ``cpu`` = cores / processes),
each with a timeout; a molecule that fails preparation or docking is reported with its reason and the
others go on. Hydrogens missing from a ligand are added (with coordinates) and that is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from geodiff.errors import GeodiffError, first_line, require_extra
from geodiff.io import atomic_path

__all__ = [
    "DockingBox",
    "prepare_ligand",
    "prepare_receptor",
    "dock_one",
    "dock_molecules",
    "summarise",
    "posebusters_checks",
    "dock_file",
    "docking_box",
    "format_docking_report",
]

MODES = ("score_only", "local_only", "dock")


@dataclass
class DockingBox:
    center: tuple[float, float, float]
    size: tuple[float, float, float] = (20.0, 20.0, 20.0)

    @classmethod
    def around(cls, coords: np.ndarray, size=(20.0, 20.0, 20.0)) -> DockingBox:
        c = np.asarray(coords, dtype=float).reshape(-1, 3).mean(0)
        return cls(tuple(float(x) for x in c), tuple(float(s) for s in size))

    @classmethod
    def from_ligand(cls, path: str | os.PathLike, size=(20.0, 20.0, 20.0)) -> DockingBox:
        """Centre of a reference ligand's coordinates (SDF / MOL / PDBQT / PDB)."""
        path = Path(path)
        if not path.is_file():
            raise GeodiffError(f"reference ligand {path} not found")
        if path.suffix.lower() in (".pdbqt", ".pdb"):
            lines = [line for line in path.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]
            xyz = [[float(line[30:38]), float(line[38:46]), float(line[46:54])] for line in lines]
        else:
            mol = Chem.MolFromMolFile(str(path), sanitize=False, removeHs=False)
            xyz = mol.GetConformer().GetPositions() if mol is not None and mol.GetNumConformers() else []
        if not len(xyz):
            raise GeodiffError(f"reference ligand {path}: no atom coordinates")
        return cls.around(np.array(xyz), size)

    @classmethod
    def from_vina_config(cls, path: str | os.PathLike) -> DockingBox:
        """A Vina box file (``center_x = ...`` / ``size_x = ...`` lines)."""
        values = {}
        for line in Path(path).read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                values[k.strip()] = float(v)
        try:
            return cls(tuple(values[f"center_{a}"] for a in "xyz"), tuple(values[f"size_{a}"] for a in "xyz"))
        except KeyError as exc:
            raise GeodiffError(f"{path}: Vina box file lacks {exc.args[0]}") from None


def geodiff_cache() -> Path:
    """Where geodiff caches derived files: ``$GEODIFF_CACHE``, else ``~/.cache/geodiff``."""
    return Path(os.environ.get("GEODIFF_CACHE") or Path.home() / ".cache" / "geodiff")


def prepare_receptor(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A receptor PDBQT: given as is, or made from a PDB (with hydrogens) by meeko's polymer tools and
    cached under :func:`geodiff_cache` (``receptors/``; never beside the input), keyed by the file's path,
    size and modification time."""
    path = Path(path)
    if not path.is_file():
        raise GeodiffError(f"receptor {path} not found")
    if path.suffix.lower() == ".pdbqt":
        if not any(line.startswith(("ATOM", "HETATM")) for line in path.read_text().splitlines()):
            raise GeodiffError(f"receptor {path}: no ATOM records")
        return path
    if path.suffix.lower() != ".pdb":
        raise GeodiffError(f"receptor {path}: expected a .pdbqt or a .pdb file")
    require_extra("receptor preparation", "docking", "meeko", "gemmi")
    import hashlib

    from meeko import MoleculePreparation, PDBQTWriterLegacy, Polymer, ResidueChemTemplates

    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    out = Path(cache_dir or geodiff_cache() / "receptors") / f"{path.stem}.{key}.pdbqt"
    if out.is_file():
        return out
    try:
        templates = ResidueChemTemplates.create_from_defaults()
        polymer = Polymer.from_pdb_string(_group_residues(path.read_text()), templates, MoleculePreparation(),
                                          allow_bad_res=True, default_altloc="A")  # fmt: skip
        rigid, _ = PDBQTWriterLegacy.write_string_from_polymer(polymer)
    except Exception as exc:
        raise GeodiffError(
            f"receptor {path}: meeko could not prepare it ({type(exc).__name__}: {exc})"
        ) from None
    with atomic_path(out) as tmp:
        tmp.write_text(rigid)
    return out


def _group_residues(pdb: str) -> str:
    """The atom records of each residue together (some files list a stray atom away from its residue)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for line in pdb.splitlines():
        if line.startswith(("ATOM", "HETATM")):
            groups.setdefault((line[21], line[22:27]), []).append(line)
    return "\n".join(line for lines in groups.values() for line in lines) + "\nEND\n"


def prepare_ligand(mol: Chem.Mol) -> tuple[str, list[str]]:
    """``(PDBQT string, notes)`` for a 3D ligand: sanitised, hydrogens added with coordinates if missing
    (protonation as given), meeko atom typing and torsion tree."""
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    notes = []
    if mol is None:
        raise GeodiffError("unreadable molecule")
    if mol.GetNumConformers() == 0:
        raise GeodiffError("no 3D coordinates")
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:
        raise GeodiffError(f"RDKit cannot sanitise it ({exc})") from None
    missing = sum(a.GetTotalNumHs() for a in mol.GetAtoms())
    if missing:
        mol = Chem.AddHs(mol, addCoords=True)
        notes.append(f"added {missing} hydrogens")
    try:
        setups = MoleculePreparation().prepare(mol)
        text, ok, err = PDBQTWriterLegacy.write_string(setups[0])
    except Exception as exc:
        raise GeodiffError(f"meeko could not prepare it ({type(exc).__name__}: {exc})") from None
    if not ok:
        raise GeodiffError(f"meeko could not write PDBQT ({err.strip()})")
    return text, notes


def _pose_to_sdf_block(pdbqt_pose: str) -> str:
    from meeko import PDBQTMolecule, RDKitMolCreate

    pmol = PDBQTMolecule(pdbqt_pose, skip_typing=True)
    mols = RDKitMolCreate.from_pdbqt_mol(pmol)
    return Chem.MolToMolBlock(mols[0]) if mols and mols[0] is not None else ""


def dock_one(job: dict) -> dict:
    """Dock (or score) one ligand; ``job`` holds the molecule block, receptor, box and settings. Runs in a
    worker process; never raises: failures come back as ``{"ok": False, "reason": ...}``."""
    t0 = time.time()
    out = {"index": job["index"], "name": job["name"], "ok": False}
    try:
        RDLogger.DisableLog("rdApp.*")
        mol = (
            Chem.MolFromMolBlock(job["molblock"], sanitize=False, removeHs=False) if job["molblock"] else None
        )
        ligand, notes = prepare_ligand(mol)
        from vina import Vina

        v = Vina(sf_name="vina", cpu=job["cpu"], seed=job["seed"], verbosity=0)
        v.set_receptor(rigid_pdbqt_filename=job["receptor"])
        v.set_ligand_from_string(ligand)
        v.compute_vina_maps(center=list(job["center"]), box_size=list(job["size"]))
        mode = job["mode"]
        if mode == "score_only":
            score = float(v.score()[0])
            pose = None
        elif mode == "local_only":
            score = float(v.optimize()[0])
            pose = _current_pose(v)  # Vina keeps the optimised pose as the ligand's current state
        else:
            v.dock(exhaustiveness=job["exhaustiveness"], n_poses=job["num_poses"])
            energies = v.energies(n_poses=job["num_poses"])
            score = float(energies[0][0])
            pose = v.poses(n_poses=1)
        out.update(ok=True, score=score, notes=notes)
        if pose:
            out["pose_sdf"] = _pose_to_sdf_block(pose)
    except GeodiffError as exc:
        out["reason"] = f"preparation: {exc}"
    except Exception as exc:  # Vina raises RuntimeError / TypeError for ligands outside the box etc.
        out["reason"] = f"vina: {type(exc).__name__}: {first_line(exc, default='(no message)')}"
    out["seconds"] = time.time() - t0
    return out


def _failed(job: dict, reason: str) -> dict:
    return {"index": job["index"], "name": job["name"], "ok": False, "reason": reason}


def _kill(executor) -> None:
    """Stop an executor now, killing workers still busy (a timed-out Vina run cannot be interrupted). Safe to
    call twice (after a shutdown the executor no longer lists its processes)."""
    procs = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()


def _die_with_parent() -> None:
    """Worker initializer: the kernel kills this worker when the parent process dies (Linux), so a killed
    or terminated run leaves no Vina worker behind."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills the workers


def _run_jobs(jobs: list[dict], processes: int, timeout: float, bar, fn=None) -> list[dict]:
    """Run :func:`dock_one` on every job in ``processes`` spawned workers (fresh interpreters: no torch /
    SWIG state from the parent). A worker that dies (a crash in a native library) breaks the pool; the jobs
    it left unfinished are then retried one per fresh worker, so the molecule that crashes is reported as
    failed and every other one is still docked. A job running past ``timeout`` seconds is reported and its
    worker killed."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    fn = fn or dock_one  # a module-level function (spawned workers import it)
    ctx = mp.get_context("spawn")
    results: dict[int, dict] = {}
    retry: list[dict] = []
    ex = ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=_die_with_parent)
    try:
        futures = [(job, ex.submit(fn, job)) for job in jobs]
        for job, fut in futures:
            try:
                results[job["index"]] = fut.result(timeout=timeout)
            except FutureTimeout:
                results[job["index"]] = _failed(job, f"timeout after {timeout:.0f} s")
                _kill(ex)  # the stuck worker holds a slot; the rest are retried one by one below
                retry = [j for j, f in futures if j["index"] not in results]
                break
            except BrokenProcessPool:
                retry = [j for j, f in futures if j["index"] not in results]
                break
            bar.update(1)
    finally:
        _kill(ex)
    for job in retry:  # isolate: one fresh worker per job
        solo = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_die_with_parent)
        try:
            results[job["index"]] = solo.submit(fn, job).result(timeout=timeout)
        except FutureTimeout:
            results[job["index"]] = _failed(job, f"timeout after {timeout:.0f} s")
        except BrokenProcessPool:
            results[job["index"]] = _failed(job, "the docking worker crashed on this molecule")
        finally:
            _kill(solo)
        bar.update(1)
    return [results[job["index"]] for job in jobs]


def _current_pose(v) -> str | None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "pose.pdbqt"
        v.write_pose(str(p), overwrite=True)
        return p.read_text()


def summarise(results: Sequence[dict]) -> dict:
    scores = np.array([r["score"] for r in results if r.get("ok")])
    out = {"num_molecules": len(results), "num_docked": int(len(scores)),
           "num_failed": int(sum(not r.get("ok") for r in results))}  # fmt: skip
    if len(scores):
        k = max(1, int(np.ceil(0.1 * len(scores))))
        out.update(mean=float(scores.mean()), median=float(np.median(scores)), best=float(scores.min()),
                   best_10_percent_mean=float(np.sort(scores)[:k].mean()))  # fmt: skip
    return out


def dock_molecules(
    mols: Sequence[Chem.Mol],
    receptor: str | os.PathLike,
    box: DockingBox | str,
    mode: str = "dock",
    exhaustiveness: int = 8,
    num_poses: int = 9,
    seed: int = 1,
    processes: int | None = None,
    timeout: float = 600.0,
    pose_dir: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Dock every molecule; returns per-molecule results (score, reason, seconds, pose file) and a summary.

    ``box``: a :class:`DockingBox` for all, or ``"each"`` for a 20 A box centred on each ligand.
    """
    from tqdm import tqdm

    require_extra("docking", "docking", "vina", "meeko")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed <= 0:
        raise GeodiffError(f"seed: must be a positive integer, got {seed!r} (Vina takes 0 as 'pick a random "
                           "seed', which no run could repeat)")  # fmt: skip
    if mode not in MODES:
        raise GeodiffError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if not mols:
        raise GeodiffError("no molecules to dock")
    receptor = prepare_receptor(receptor)
    rec_xyz = np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                        for line in receptor.read_text().splitlines()
                        if line.startswith(("ATOM", "HETATM"))])  # fmt: skip
    jobs = []
    names = list(names) if names is not None else [f"mol{k}" for k in range(len(mols))]
    cores = os.cpu_count() or 1
    processes = max(1, min(processes or cores, len(mols)))
    cpu = max(1, cores // processes)
    for k, mol in enumerate(mols):
        if isinstance(box, DockingBox):
            b = box
        elif mol is not None and mol.GetNumConformers():
            b = DockingBox.around(mol.GetConformer().GetPositions())
        else:
            b = DockingBox((0.0, 0.0, 0.0))
        try:
            block = Chem.MolToMolBlock(mol, kekulize=False) if mol is not None else ""
        except Exception:  # RDKit cannot even write it: preparation will report it
            block = ""
        jobs.append({"index": k, "name": names[k], "molblock": block,
                     "receptor": str(receptor), "center": b.center, "size": b.size, "mode": mode,
                     "exhaustiveness": exhaustiveness, "num_poses": num_poses, "seed": seed,
                     "cpu": cpu})  # fmt: skip
    if isinstance(box, DockingBox):
        lo, hi = np.array(box.center) - np.array(box.size) / 2, np.array(box.center) + np.array(box.size) / 2
        if not ((rec_xyz >= lo) & (rec_xyz <= hi)).all(1).any():
            raise GeodiffError(f"the box (centre {box.center}, size {box.size}) holds no receptor atom")
    with tqdm(total=len(jobs), desc=f"vina {mode}", disable=not progress, unit="mol") as bar:
        results = _run_jobs(jobs, processes, timeout, bar)  # an interrupted run closes its bar first
    if pose_dir:
        pose_dir = Path(pose_dir)
        pose_dir.mkdir(parents=True, exist_ok=True)
        for old in pose_dir.glob("[0-9][0-9][0-9][0-9][0-9].sdf"):  # a previous run's poses: never mixed in
            old.unlink()
        for r in results:
            block = r.pop("pose_sdf", "")
            if block:
                path = pose_dir / f"{r['index']:05d}.sdf"
                with atomic_path(path) as tmp:
                    tmp.write_text(block + "$$$$\n")
                r["pose_file"] = str(path)
    return results, summarise(results)


def posebusters_checks(pose_files: Sequence[str | os.PathLike | None], protein_pdb: str | os.PathLike,
                       config: str = "dock") -> list[dict | None]:  # fmt: skip
    """PoseBusters' plausibility checks (Buttenschoen et al. 2024; ``config="dock"``: chemistry, geometry,
    intramolecular and protein-ligand clashes) on each docked pose file against the protein (a PDB file).
    Per pose: ``{"pb_valid": all passed, "passed": n, "checks": n_total, "failed": [names]}``; ``None`` where
    there is no pose. A pose PoseBusters cannot load counts as failing its loading check."""
    protein = Path(protein_pdb)
    if protein.suffix.lower() != ".pdb" or not protein.is_file():
        raise GeodiffError(f"posebusters: needs the receptor as a PDB file, got {protein}")
    require_extra("posebusters checks", "docking", "posebusters")
    from posebusters import PoseBusters

    buster = PoseBusters(config=config)
    out: list[dict | None] = []
    RDLogger.DisableLog("rdApp.*")
    for f in pose_files:
        if not f:
            out.append(None)
            continue
        try:
            row = buster.bust([str(f)], None, str(protein)).iloc[0]
            checks = {str(k): bool(v) for k, v in row.items()}
        except Exception as exc:  # a malformed pose: report it, go on with the rest
            out.append(
                {"pb_valid": False, "passed": 0, "checks": 0, "failed": [f"error: {type(exc).__name__}"]}
            )
            continue
        failed = [k for k, v in checks.items() if not v]
        out.append({"pb_valid": not failed, "passed": len(checks) - len(failed), "checks": len(checks),
                    "failed": failed})  # fmt: skip
    return out


def docking_box(ligand=None, center=None, box=None, size=(20.0, 20.0, 20.0)) -> DockingBox | str:
    """The docking box from one of: a reference ligand file (centred on it), an explicit ``center``
    ``[x, y, z]``, a Vina box file, or ``"each"`` (a box centred on every ligand); ``size`` in Angstrom."""
    size = tuple(float(x) for x in size)
    if ligand:
        return DockingBox.from_ligand(Path(ligand), size)
    if center is not None:
        if len(center) != 3:
            raise GeodiffError(f"center: need [x, y, z], got {list(center)}")
        return DockingBox(tuple(float(x) for x in center), size)
    if box == "each":
        return "each"
    if box:
        return DockingBox.from_vina_config(Path(box))
    raise GeodiffError("task=docking needs a box: ligand=REF.sdf, center=[x,y,z], box=FILE or box=each")


def dock_file(samples: str | os.PathLike, receptor: str | os.PathLike, box: DockingBox | str,
              mode: str = "dock", pose_dir: str | os.PathLike | None = None, posebusters: bool = False,
              **dock_kwargs) -> dict:  # fmt: skip
    """Dock every molecule of an SDF (see :func:`dock_molecules`; unreadable records are reported, not
    docked) and, with ``posebusters``, check each best pose: the report ``geodiff evaluate task=docking``
    prints and writes."""
    from geodiff.data.structures import read_sdf_rdkit, unreadable

    mols, names, failures = read_sdf_rdkit(Path(samples))
    if not mols:
        raise GeodiffError(f"{samples}: no readable molecules ({unreadable(failures)})")
    if posebusters and (mode == "score_only" or not pose_dir or not str(receptor).lower().endswith(".pdb")):
        raise GeodiffError(
            "posebusters=true needs poses (mode=dock or local_only, and output= or pose_dir=) and the "
            "receptor as a .pdb"
        )
    results, summary = dock_molecules(mols, Path(receptor), box, mode=mode, pose_dir=pose_dir, names=names,
                                      **dock_kwargs)  # fmt: skip
    if posebusters:
        checks = posebusters_checks([r.get("pose_file") for r in results], Path(receptor))
        for r, c in zip(results, checks, strict=True):
            if c is not None:
                r["posebusters"] = c
        valid = [c["pb_valid"] for c in checks if c is not None]
        summary["posebusters_valid"] = float(sum(valid) / len(valid)) if valid else 0.0
    return {"task": "docking", "mode": mode, "receptor": str(receptor),
            "box": box if isinstance(box, str) else {"center": box.center, "size": box.size},
            "summary": summary, "molecules": results,
            "unreadable": [{"record": n, "reason": r} for n, r in failures]}  # fmt: skip


def format_docking_report(report: dict) -> list[str]:
    """One line per molecule (score or failure, notes, PoseBusters), the summary and unreadable records."""
    lines = []
    for r in report["molecules"]:
        state = f"{r['score']:8.3f} kcal/mol" if r.get("ok") else f"failed: {r.get('reason')}"
        notes = f"  ({'; '.join(r['notes'])})" if r.get("notes") else ""
        if "posebusters" in r:
            pb = r["posebusters"]
            notes += f"  PB-valid {pb['pb_valid']} ({pb['passed']}/{pb['checks']})"
        lines.append(f"{r['index']:5d}  {r['name'][:30]:<30}  {state}{notes}")
    summary = report["summary"]
    keys = ("mean", "median", "best", "best_10_percent_mean")
    stats = ", ".join(f"{k} {summary[k]:.3f}" for k in keys if k in summary)
    lines.append(f"docked {summary['num_docked']}/{summary['num_molecules']} ({report['mode']}); {stats}")
    if "posebusters_valid" in summary:
        share = 100 * summary["posebusters_valid"]
        lines.append(f"PoseBusters (dock checks): {share:.1f} % of poses pass all")
    lines += [f"  unreadable: {u['record']}: {u['reason']}" for u in report["unreadable"][:5]]
    return lines
