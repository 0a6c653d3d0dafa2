"""Sampling 3D molecules with a trained EQGAT-diff model: (denoiser, schedulers) -> molecules.

    pipe = MoleculeDiffusionPipeline.from_pretrained("qm9_eqgat_small").to("cpu")
    out = pipe(num_samples=100, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    mols = out.to_rdkit()             # RDKit molecules (None where RDKit cannot build one)
    out.write_sdf("mols.sdf")

Atom counts are drawn from the training histogram (or fixed); positions start from zero-CoM Gaussian noise,
atom types, charges and bonds from their marginal priors (bonds drawn once per atom pair and mirrored).
Each step runs the denoiser once and moves every part with its own scheduler. ``pipe.scheduler`` (the
positions' scheduler) may be replaced, e.g. by ``convert(pipe.scheduler, E3DDIMScheduler)`` for DDIM steps;
``sampler="ddim"`` does that for one call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from geodiff.data.molecules import (
    DatasetStatistics,
    MoleculeRecord,
    MoleculeVocabulary,
    fully_connected_edges,
)
from geodiff.data.structures import Molecule3D, rdkit_unsafe
from geodiff.data.structures import write_sdf as write_molecules
from geodiff.errors import GeodiffValueError
from geodiff.io import atomic_path, output_and_picture
from geodiff.metrics.novelty import TRAINING_SMILES, SmilesSet
from geodiff.models.eqgat_diff import EQGATDiffDenoiser, reverse_edge_permutation
from geodiff.models.eqgat_reference import EQGATReferenceDenoiser
from geodiff.models.plain_molecules import PlainMoleculeDenoiser
from geodiff.pipelines.base import GeodiffPipeline
from geodiff.pipelines.sharding import Shard
from geodiff.schedulers import (
    CategoricalD3PMScheduler,
    CategoricalFlowMatchScheduler,
    E3DDPMScheduler,
    E3FlowMatchScheduler,
    MoleculeSchedulers,
    load_scheduler,
)

__all__ = ["MoleculeDiffusionPipeline", "MoleculePipelineOutput", "draw_grid", "format_sample_report",
           "records_from_graph", "sample_and_score", "write_sdf"]  # fmt: skip


@dataclass
class MoleculePipelineOutput:
    """Sampled molecules: a sequence of :class:`~geodiff.data.structures.Molecule3D` (``len``, iteration,
    indexing).

    Attributes:
        molecules: one per sample: atomic numbers ``[n]``, positions ``[n, 3]`` (Angstrom), formal charges
            ``[n]``, bonds ``[b, 3]`` rows ``(i, j, type)`` with i < j (1 single, 2 double, 3 triple,
            4 aromatic).
        vocab: the model's classes (what the model could have generated).
    """

    molecules: list[Molecule3D]
    vocab: MoleculeVocabulary

    def __len__(self) -> int:
        return len(self.molecules)

    def __iter__(self) -> Iterator[Molecule3D]:
        return iter(self.molecules)

    def __getitem__(self, i):
        return self.molecules[i]

    def to_rdkit(self, sanitize: bool = True) -> list:
        """RDKit molecules with 3D conformers, in order; with ``sanitize`` (default), None where RDKit's
        sanitisation rejects the molecule."""
        from rdkit import Chem, RDLogger

        out = []
        RDLogger.DisableLog("rdApp.*")
        try:
            for m, unsafe in zip(self.molecules, rdkit_unsafe(self.molecules), strict=True):
                if unsafe:  # RDKit could crash on it
                    out.append(None)
                    continue
                mol = m.to_rdkit()
                if sanitize:
                    try:
                        Chem.SanitizeMol(mol)
                    except Exception:
                        mol = None
                out.append(mol)
        finally:
            RDLogger.EnableLog("rdApp.error")
        return out

    def write_sdf(self, path: str | os.PathLike) -> int:
        """Every molecule to an SDF, atomically (see :func:`write_sdf`); returns how many were written."""
        return write_sdf(self.molecules, path)

    def draw_grid(self, path: str | os.PathLike, n: int = 16, per_row: int = 4) -> Path:
        """A PNG grid of the first ``n`` molecules (see :func:`draw_grid`)."""
        return draw_grid(self.molecules, path, n, per_row)


class MoleculeDiffusionPipeline(GeodiffPipeline):
    """EQGAT-diff sampling (see the module docstring). ``schedulers``: the four schedulers of the export;
    ``scheduler`` is the positions' one (replaceable); ``vocab`` and ``stats`` come from the training data."""

    FAMILY = "molecules"
    MODEL = EQGATDiffDenoiser
    OTHER_MODELS = (
        EQGATReferenceDenoiser,
        PlainMoleculeDenoiser,
    )  # model=eqgat_diff_reference, molecule_plain

    def __init__(self, model: EQGATDiffDenoiser, schedulers: MoleculeSchedulers, vocab: MoleculeVocabulary,
                 stats: DatasetStatistics, training_smiles: SmilesSet | None = None):  # fmt: skip
        self.model, self.schedulers, self.vocab, self.stats = model.eval(), schedulers, vocab, stats
        #: hashed canonical SMILES of the training molecules (novelty); None for exports made without them
        self.training_smiles = training_smiles

    @classmethod
    def _from_export(cls, model, directory, meta):
        d = directory
        categorical = (CategoricalD3PMScheduler, CategoricalFlowMatchScheduler)
        sch = MoleculeSchedulers(
            pos=load_scheduler(d / "scheduler_pos", E3DDPMScheduler, E3FlowMatchScheduler),
            atoms=load_scheduler(d / "scheduler_atoms", *categorical),
            charges=load_scheduler(d / "scheduler_charges", *categorical),
            bonds=load_scheduler(d / "scheduler_bonds", *categorical),
        )
        smiles = SmilesSet.load(d / TRAINING_SMILES) if (d / TRAINING_SMILES).is_file() else None
        return cls(model, sch, MoleculeVocabulary.from_dict(meta["vocab"]),
                   DatasetStatistics.from_dict(meta["statistics"]), smiles)  # fmt: skip

    @property
    def scheduler(self):
        """The positions' scheduler (atoms, charges and bonds keep theirs)."""
        return self.schedulers.pos

    @scheduler.setter
    def scheduler(self, value) -> None:
        self.schedulers = MoleculeSchedulers(value, self.schedulers.atoms, self.schedulers.charges,
                                             self.schedulers.bonds)  # fmt: skip

    def _atom_counts(self, num_samples: int, num_atoms, generator) -> torch.Tensor:
        if num_atoms is None:
            return self.stats.sample_num_atoms(num_samples, generator)
        if isinstance(num_atoms, (torch.Tensor, np.ndarray)):
            num_atoms = num_atoms.reshape(-1).tolist()
        values = list(num_atoms) if hasattr(num_atoms, "__len__") else [num_atoms]  # a list or one count
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
            raise GeodiffValueError(f"num_atoms: need one positive count or {num_samples}, got {num_atoms}")
        counts = torch.as_tensor([int(v) for v in values], dtype=torch.long)
        if counts.numel() == 1:
            counts = counts.expand(num_samples).clone()
        if counts.numel() != num_samples or int(counts.min()) < 1:
            raise GeodiffValueError(f"num_atoms: need one positive count or {num_samples}, got {num_atoms}")
        return counts

    @torch.no_grad()
    def __call__(self, num_samples: int, num_atoms: int | list[int] | None = None,
                 num_inference_steps: int | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None, sampler: Literal["ddpm", "ddim"] | None = None,
                 batch_size: int = 100, progress: bool | None = None,
                 last_step: Literal["sample", "argmax"] = "sample",
                 time_shift: float | None = None) -> MoleculePipelineOutput:  # fmt: skip
        """Sample ``num_samples`` molecules.

        ``num_inference_steps``: None for all T training steps; fewer are a strided grid (DDPM: ancestral
        steps over the skipped intervals), more than T put the same continuous-time noise schedules on a
        finer grid of that many steps (the denoiser takes time as a fraction of the way to pure noise).

        ``generator`` (or ``seed``) fixes the draws; ``sampler``: ``ddpm`` or ``ddim`` for this call (None:
        ``pipe.scheduler`` as it is). ``last_step``: how the final reverse step turns the model's x0
        probabilities of atom types, charges and bonds into classes: ``sample`` draws them (ancestral
        sampling all the way, the paper's sampler), ``argmax`` takes the most probable class of each.
        ``time_shift`` (flow-matching exports): the shift of the sampling grid for this call, for all four
        parts (None: the export's; 1: uniform; < 1 spends more steps near the data, > 1 near the noise).
        """
        self.check_call(num_inference_steps, sampler, num_samples=num_samples, batch_size=batch_size)
        if last_step not in ("sample", "argmax"):
            raise GeodiffValueError(f"last_step: expected sample or argmax, got {last_step!r}")
        k = num_inference_steps
        T = self.schedulers.num_train_timesteps
        # more steps than the model was trained with: the same schedules on a finer grid (built once, and
        # before any sampling, so that a linear schedule fails first)
        schedulers = self._refined(k) if k is not None and k > T else self.schedulers
        if time_shift is not None:
            schedulers = self._shifted(schedulers, time_shift)
        pos = self.with_sampler(schedulers.pos, sampler)
        if pos.config.get("solver", "euler") != "euler":
            raise GeodiffValueError("scheduler: molecules sample with the euler solver (their atom, charge "
                                    "and bond chains take one step per interval)")  # fmt: skip
        schedulers = MoleculeSchedulers(pos, schedulers.atoms, schedulers.charges, schedulers.bonds)
        self._set_one_grid(schedulers, k or T)
        g = self.generator(generator, seed)
        counts = self._atom_counts(num_samples, num_atoms, g)
        out: list[Molecule3D] = []
        name = type(pos).__name__
        bar = self.progress_bar(progress, total=num_samples, desc=f"sampling molecules ({name})")
        for sizes in torch.split(counts, batch_size):
            records = self._sample_batch(schedulers, sizes, k or T, g, bar.disable is False, last_step)
            out.extend(r.decode(self.vocab) for r in records)
        for i, m in enumerate(out):
            m.name = f"sample_{i}"
            bar.update(len(sizes))
        bar.close()
        return MoleculePipelineOutput(out, self.vocab)

    def _refined(self, num_timesteps: int) -> MoleculeSchedulers:
        """The schedulers with their schedules discretised into ``num_timesteps`` steps instead of T.

        The denoiser sees time as ``(t + 1) / T`` in (0, 1] and the cosine / polynomial / adaptive cosine
        schedules are functions of that continuous time, so a finer grid asks the model about the same
        noise levels, only more of them (up to the clipping of the largest betas next to pure noise; the
        linear schedule's betas are per step and do not refine)."""
        s = self.schedulers
        parts = {n: getattr(s, n) for n in MoleculeSchedulers.PARTS}
        linear = [n for n, sch in parts.items() if sch.config.get("beta_schedule") == "linear"]
        if linear:
            raise GeodiffValueError(
                f"num_inference_steps: {num_timesteps} is more than the {s.num_train_timesteps} training "
                f"steps, which needs schedules defined in continuous time; the {', '.join(linear)} schedule "
                "is linear"
            )
        return s.from_configs(num_train_timesteps=num_timesteps)

    @staticmethod
    def _shifted(s: MoleculeSchedulers, time_shift) -> MoleculeSchedulers:
        """The four flow-matching schedulers with their sampling grid shifted by ``time_shift``."""
        if isinstance(time_shift, bool) or not isinstance(time_shift, (int, float)):
            raise GeodiffValueError(f"time_shift: expected a number > 0, got {time_shift!r}")
        if not all("time_shift" in getattr(s, n).config for n in MoleculeSchedulers.PARTS):
            raise GeodiffValueError(f"time_shift: a flow-matching option (the grid of its steps); this "
                                    f"export samples with {type(s.pos).__name__}")  # fmt: skip
        return s.from_configs(time_shift=float(time_shift))

    @staticmethod
    def _set_one_grid(s: MoleculeSchedulers, n_steps: int) -> None:
        """Set the four schedulers to ``n_steps`` steps. The sampling loop steps atom types, charges and
        bonds at the positions' time steps, so their grids must be the positions' grid (a scheduler built
        with another ``time_shift``, ``num_train_timesteps`` or spacing would be stepped at wrong times)."""
        parts = MoleculeSchedulers.PARTS
        for name in parts:
            getattr(s, name).set_timesteps(n_steps)
        grid = s.pos.timesteps.cpu()
        other = [n for n in parts[1:] if not torch.equal(getattr(s, n).timesteps.cpu(), grid)]
        if other:
            raise GeodiffValueError(
                f"scheduler: the {', '.join(other)} scheduler(s) step on another time grid than the "
                f"positions' at {n_steps} steps (time_shift, num_train_timesteps or spacing differ): the "
                "four parts of a molecule share one grid"
            )

    def _sample_batch(self, s: MoleculeSchedulers, sizes, n_steps, g, progress, last_step
                      ) -> list[MoleculeRecord]:  # fmt: skip
        device, dtype = self.device, self.dtype
        T = s.num_train_timesteps
        pos_sched = s.pos
        n = int(sizes.sum())
        batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes).to(device)
        ei, eb = fully_connected_edges(sizes)
        ei, eb = ei.to(device), eb.to(device)
        upper = (ei[0] < ei[1]).unsqueeze(-1)
        rev = reverse_edge_permutation(ei, n)
        pos = pos_sched.sample_prior((n, 3), batch=batch, generator=g, dtype=dtype, device=device)
        atoms = s.atoms.sample_prior((n,), generator=g, dtype=dtype).to(device)
        charges = s.charges.sample_prior((n,), generator=g, dtype=dtype).to(device)
        bonds = s.bonds.sample_prior((ei.shape[1],), generator=g, dtype=dtype).to(device)
        bonds = torch.where(upper, bonds, bonds[rev])
        last = len(pos_sched.timesteps) - 1
        sc = getattr(self.model.config, "self_condition", False)
        pred = None
        steps = self.progress_bar(progress, iterable=pos_sched.timesteps, desc="denoising", leave=False)
        for i, t in enumerate(steps):
            tt = torch.full((len(sizes),), (int(t) + 1) / T, dtype=dtype, device=device)
            # self-conditioning: every step after the first reads the previous step's prediction
            cond = self.model.self_cond_from(pred) if sc and pred is not None else None
            pred = self.model(pos, atoms, charges, bonds, tt, batch, ei, self_cond=cond)
            kw = {"generator": g, "deterministic": last_step == "argmax" and i == last}
            pos = pos_sched.step(pred["pos"], t, pos, batch=batch, generator=g).prev_sample
            atoms = s.atoms.step(pred["atoms"], t, atoms, batch=batch, **kw).prev_sample
            charges = s.charges.step(pred["charges"], t, charges, batch=batch, **kw).prev_sample
            bonds = s.bonds.step(pred["bonds"], t, bonds, batch=eb, **kw).prev_sample
            bonds = torch.where(upper, bonds, bonds[rev])
        return records_from_graph(pos, atoms, charges, bonds, ei, sizes)


def records_from_graph(pos: torch.Tensor, atoms: torch.Tensor, charges: torch.Tensor, bonds: torch.Tensor,
                       edge_index: torch.Tensor, sizes: torch.Tensor,
                       prefix: str = "sample") -> list[MoleculeRecord]:  # fmt: skip
    """Split a node-flattened batch into one :class:`MoleculeRecord` per molecule. ``atoms``, ``charges``
    and ``bonds`` are class scores (one-hot or logits, argmax taken) over the fully connected
    ``edge_index``; a bond is kept where ``i < j`` and its class is not 0 (no bond)."""
    a, c, b = atoms.argmax(-1).cpu(), charges.argmax(-1).cpu(), bonds.argmax(-1).cpu()
    pos, ei, sizes = pos.float().cpu(), edge_index.cpu(), sizes.cpu()
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    keep = (ei[0] < ei[1]) & (b > 0)
    records = []
    for k in range(len(sizes)):
        lo, hi = int(ptr[k]), int(ptr[k + 1])
        sel = keep & (ei[0] >= lo) & (ei[0] < hi)
        records.append(
            MoleculeRecord(pos[lo:hi], a[lo:hi], c[lo:hi], ei[:, sel] - lo, b[sel], f"{prefix}_{k}")
        )
    return records


def write_sdf(molecules: list[Molecule3D], path: str | os.PathLike) -> int:
    """Write molecules (3D coordinates, bond orders, formal charges) to an SDF, atomically, every one in
    order whatever its chemistry (geodiff's own molfile writer: no RDKit, which generated nonsense can
    crash). Returns how many were written."""
    write_molecules(molecules, path)
    return len(molecules)


def draw_grid(molecules: list[Molecule3D], path: str | os.PathLike, n: int = 16, per_row: int = 4) -> Path:
    """A PNG grid of 2D depictions of the first ``n`` molecules (labelled valid / invalid)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Draw

    RDLogger.DisableLog("rdApp.*")
    mols, legends = [], []
    for m, unsafe in zip(molecules[:n], rdkit_unsafe(molecules[:n]), strict=True):
        if unsafe:  # RDKit could crash on it: an empty cell
            mols.append(Chem.Mol())
            legends.append("not drawable")
            continue
        mol = m.to_rdkit()
        try:
            Chem.SanitizeMol(mol)
            label = Chem.MolToSmiles(Chem.RemoveHs(mol))
        except Exception:
            mol = Chem.RWMol(mol)
            for atom in mol.GetAtoms():  # depict the graph even when its charges have no valence model
                atom.SetFormalCharge(0)
            mol.UpdatePropertyCache(strict=False)
            label = "invalid"
        m2 = Chem.Mol(mol)
        m2.RemoveAllConformers()
        try:  # RDKit's 2D depiction can fail on odd generated graphs: one bad molecule must not sink the grid
            Draw.MolsToGridImage([m2], molsPerRow=1, subImgSize=(50, 50))  # the grid's own drawing code
        except Exception:
            m2, label = Chem.Mol(), f"{label} (not drawable)"
        mols.append(m2)
        legends.append(label if len(label) < 30 else label[:27] + "...")
    RDLogger.EnableLog("rdApp.error")
    img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(250, 200), legends=legends)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(str(tmp), format="PNG")
    return path


def sample_and_score(pipe: MoleculeDiffusionPipeline, output: str | os.PathLike | None = None,
                     grid: str | os.PathLike | None = None, shard: Shard | None = None,
                     **sample_kwargs) -> dict | None:  # fmt: skip
    """Sample molecules (``sample_kwargs`` go to the pipeline call), write them as an SDF (``output``) with a
    PNG grid of the first 16 (``grid``, default beside the SDF), and score them on their generated bonds
    (:func:`geodiff.metrics.chemistry.molecule_metrics`): what ``geodiff sample``, ``make demo`` and
    ``eval/eval_molecules.py`` share. Returns ``{"output", "metrics", "seconds", "sampler", "steps", "sdf",
    "png", "processes"}`` (``output`` the :class:`MoleculePipelineOutput`). ``metrics["novelty"]`` is against
    the export's training molecules, None when the export does not carry them (made before they were stored).

    ``shard`` (:class:`~geodiff.pipelines.sharding.Shard`): this process samples its share of
    ``num_samples`` with seed ``seed + rank``; rank 0 merges, scores and writes, and returns the report
    (other ranks return None)."""
    import time

    from geodiff.metrics.chemistry import molecule_metrics

    shard = shard or Shard()
    png = output_and_picture(output, grid, "grid", ".sdf")  # checked before any sampling
    shard.check_seeded(sample_kwargs)
    t0 = time.time()
    if shard.world_size > 1:
        n = sample_kwargs["num_samples"]
        lo, hi = shard.range(n, "num_samples")
        sizes = sample_kwargs.get("num_atoms")
        if sizes is not None and not isinstance(sizes, int) and len(sizes) == n:
            sample_kwargs["num_atoms"] = list(sizes)[lo:hi]
        sample_kwargs.update(num_samples=hi - lo, seed=shard.seed(sample_kwargs.get("seed")))
    out = pipe(**sample_kwargs)
    parts = shard.gather(out.molecules)
    if parts is None:
        return None
    out = MoleculePipelineOutput([m for part in parts for m in part], out.vocab)
    for i, m in enumerate(out.molecules):
        m.name = f"sample_{i}"
    seconds = time.time() - t0
    metrics = molecule_metrics(out.molecules, reference_smiles=pipe.training_smiles)
    metrics.setdefault("novelty", None)  # None: the export carries no training SMILES
    default = "flow" if isinstance(pipe.scheduler, E3FlowMatchScheduler) else "ddpm"
    sampler = sample_kwargs.get("sampler") or default
    if sample_kwargs.get("time_shift") is not None:
        sampler += f" (time_shift {sample_kwargs['time_shift']:g})"
    report = {"output": out, "seconds": seconds, "sampler": sampler,
              "steps": sample_kwargs.get("num_inference_steps") or pipe.schedulers.num_train_timesteps,
              "metrics": metrics, "sdf": None,
              "png": None, "processes": shard.world_size}  # fmt: skip
    if output is not None:
        out.write_sdf(output)
        report["sdf"] = Path(output)
        report["png"] = out.draw_grid(png)
    return report


def _on_processes(report: dict) -> str:
    k = report.get("processes", 1)
    return f", {k} processes" if k > 1 else ""


def format_sample_report(report: dict) -> list[str]:
    """The lines ``geodiff sample`` prints for a :func:`sample_and_score` report."""
    from geodiff.metrics.chemistry import most_unstable

    n, s, m = len(report["output"]), report["seconds"], report["metrics"]
    lines = [
        f"sampled {n} molecules in {s:.1f} s ({n / max(s, 1e-9):.2f} molecules/s, {report['sampler']}, "
        f"{report['steps']} steps{_on_processes(report)})",
        f"molecule stability {100 * m['mol_stability']:.1f} %, "
        f"atom stability {100 * m['atom_stability']:.1f} %, validity {100 * m['validity']:.1f} %, "
        f"connected validity {100 * m['connected_validity']:.1f} %, "
        f"uniqueness {100 * m['uniqueness']:.1f} % (generated bonds, {m['valence_table']} valences)",
        "novelty unavailable (this export carries no training SMILES)"
        if m.get("novelty") is None
        else f"novelty {100 * m['novelty']:.1f} % (against the training molecules)",
    ]
    if m["unstable_atoms"]:
        lines.append(f"most unstable atoms: {most_unstable(m['unstable_atoms'])}")
    if report["sdf"]:
        lines += [f"SDF  {report['sdf']}", f"PNG  {report['png']}"]
    return lines
