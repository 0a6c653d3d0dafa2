"""EQGAT-diff on 3D molecules (Le et al., ICLR 2024): the training objective and its Lightning module.

The objective, per molecule, with ``t`` drawn uniformly from the training timesteps:

* positions: Gaussian DDPM with zero-CoM noise, the model predicts x0; squared error summed over
  coordinates and averaged over atoms;
* atom types, charges, bonds: D3PM with the training marginal as prior; cross-entropy of the predicted
  clean classes, averaged over atoms (bonds: over atom pairs). Bonds are noised once per unordered pair
  and mirrored, so the noisy graph stays symmetric;
* total = w(t) [3 L_pos + 0.4 L_atoms + 2 L_bonds + 1 L_charges], ``w(t) = clamp(SNR, 0.05, 1.5)``, averaged
  over the molecules of the batch.

A denoiser built with ``self_condition`` (geodiff's option, not the paper's) is trained with
self-conditioning: in half the batches, chosen at random, the loss is that of its second prediction, made
with its own (detached) first prediction as an extra input.

The schedulers come from ``configs/scheduler/eqgat_diff.yaml`` (or any other
:class:`~geodiff.schedulers.MoleculeSchedulers` config); the D3PM priors of a ``marginal`` scheduler and
the class counts are set from the training data. Dataset statistics (marginals, the atom-count histogram
for sampling) and the vocabulary travel with the checkpoint and the export (``molecules.json``).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from geodiff.config import build
from geodiff.data.molecules import DatasetStatistics, MoleculeBatch, MoleculeVocabulary
from geodiff.errors import GeodiffError
from geodiff.manifolds import euclidean
from geodiff.metrics.novelty import TRAINING_SMILES, SmilesSet
from geodiff.models.eqgat_diff import EQGATDiffDenoiser, reverse_edge_permutation
from geodiff.nn.scatter import scatter_mean
from geodiff.schedulers import E3FlowMatchScheduler, MoleculeSchedulers
from geodiff.training.base import DiffusionModule

__all__ = ["LossWeights", "MoleculeDiffusionModule", "eqgat_diff_loss", "noisy_molecules", "with_data"]


@dataclass
class LossWeights:
    """Weights of the four loss terms (EQGAT-diff's ``--lc-coords``, ``--lc-atoms``, ``--lc-bonds``,
    ``--lc-charges``)."""

    pos: float = 3.0
    atoms: float = 0.4
    bonds: float = 2.0
    charges: float = 1.0


def noisy_molecules(batch: MoleculeBatch, schedulers: MoleculeSchedulers, t: torch.Tensor,
                    generator: torch.Generator | None = None,
                    ot: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """Forward-noise a batch at per-graph timesteps ``t``; returns the noisy model inputs and the targets.
    ``ot``: pair each molecule with its noise by equivariant optimal transport (:func:`euclidean.ot_align`;
    flow matching only)."""
    num_graphs = batch.num_graphs
    dtype = batch.pos.dtype
    x0 = euclidean.remove_mean(batch.pos, batch.batch, num_graphs)
    eps = torch.randn(x0.shape, generator=generator, dtype=dtype, device=x0.device)
    if ot:
        eps = euclidean.remove_mean(eps, batch.batch, num_graphs)
        eps = euclidean.ot_align(x0, eps, batch.batch, num_graphs)
    pos_t = schedulers.pos.add_noise(x0, eps, t, batch=batch.batch)
    atoms0 = F.one_hot(batch.atom_types, schedulers.atoms.config.num_classes).to(dtype)
    charges0 = F.one_hot(batch.charges, schedulers.charges.config.num_classes).to(dtype)
    bonds0 = F.one_hot(batch.edge_types, schedulers.bonds.config.num_classes).to(dtype)
    atoms_t = schedulers.atoms.add_noise(atoms0, t, batch=batch.batch, generator=generator)
    charges_t = schedulers.charges.add_noise(charges0, t, batch=batch.batch, generator=generator)
    src, dst = batch.edge_index
    rev = reverse_edge_permutation(batch.edge_index, batch.pos.shape[0])
    bonds_t = schedulers.bonds.add_noise(bonds0, t, batch=batch.edge_batch, generator=generator)
    bonds_t = torch.where((src < dst).unsqueeze(-1), bonds_t, bonds_t[rev])  # one draw per unordered pair
    return {"pos": pos_t, "atoms": atoms_t, "charges": charges_t, "bonds": bonds_t, "x0": x0}


def eqgat_diff_loss(
    model,
    batch: MoleculeBatch,
    schedulers: MoleculeSchedulers,
    weights: LossWeights | None = None,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    normalisation: str = "geodiff",
    ot: bool = False,
) -> dict[str, torch.Tensor]:
    """The weighted EQGAT-diff loss and its components (each a scalar tensor).

    ``normalisation``: ``geodiff`` (per graph: squared position error summed over xyz and averaged over atoms,
    cross-entropies averaged over atoms / edges; the weighted sum averaged over graphs) or ``reference``
    (tuanle618/eqgat-diff ``experiments/losses.py``, ``DiffusionLoss`` with weights: the position error
    averaged over xyz, the bond cross-entropy times 0.5, and the weighted per-graph terms summed over the
    batch). Relative to atoms and charges, geodiff's positions weigh 3x and its bonds 2x more; the reference's
    total also grows with the batch size."""
    if normalisation not in ("geodiff", "reference"):
        raise GeodiffError(f"loss_normalisation: expected geodiff or reference, got {normalisation!r}")
    weights = weights or LossWeights()
    G, T = batch.num_graphs, schedulers.num_train_timesteps
    device = batch.pos.device
    if t is None:
        t = torch.randint(0, T, (G,), generator=generator, device=generator.device if generator else device)
        t = t.to(device)
    noisy = noisy_molecules(batch, schedulers, t, generator, ot)
    inputs = (noisy["pos"], noisy["atoms"], noisy["charges"], noisy["bonds"], (t.to(batch.pos.dtype) + 1) / T,
              batch.batch, batch.edge_index)  # fmt: skip
    self_cond = None
    if getattr(model.config, "self_condition", False):
        # self-conditioning: in half the batches the model first predicts without, and then learns to refine
        # that (detached) prediction, as it will refine its previous step's when sampling
        coin = torch.rand((), generator=generator, device=generator.device if generator else "cpu")
        if float(coin) < 0.5:
            with torch.no_grad():
                self_cond = model.self_cond_from(model(*inputs))
    out = model(*inputs, self_cond=self_cond)
    l_pos = scatter_mean((out["pos"] - noisy["x0"]).pow(2).sum(-1), batch.batch, G)
    l_atoms = scatter_mean(F.cross_entropy(out["atoms"], batch.atom_types, reduction="none"), batch.batch, G)
    l_charges = scatter_mean(F.cross_entropy(out["charges"], batch.charges, reduction="none"), batch.batch, G)
    l_bonds = scatter_mean(
        F.cross_entropy(out["bonds"], batch.edge_types, reduction="none"), batch.edge_batch, G
    )
    w = schedulers.pos.loss_weight(t).to(batch.pos.dtype)
    if normalisation == "reference":  # mean over xyz, 0.5 x bonds, summed over the batch
        l_pos, l_bonds = l_pos / 3, 0.5 * l_bonds
    per_graph = w * (weights.pos * l_pos + weights.atoms * l_atoms + weights.bonds * l_bonds
                     + weights.charges * l_charges)  # fmt: skip
    return {
        "loss": per_graph.sum() if normalisation == "reference" else per_graph.mean(),
        "pos": l_pos.mean().detach(),
        "atoms": l_atoms.mean().detach(),
        "charges": l_charges.mean().detach(),
        "bonds": l_bonds.mean().detach(),
    }


def with_data(schedulers: MoleculeSchedulers, stats: DatasetStatistics) -> MoleculeSchedulers:
    """``schedulers`` fitted to a data set: the class counts of its vocabulary, and its marginals as the
    priors of the categorical schedulers whose ``prior_type`` is ``marginal``. A categorical entry may be a
    scheduler (refitted) or a partial constructor (a Hydra ``_partial_`` config, completed here)."""

    def fit(sched, marginal):
        if isinstance(sched, functools.partial):
            marginal_prior = sched.keywords.get("prior_type", "marginal") == "marginal"
            extra = {"prior_probs": [float(x) for x in marginal]} if marginal_prior else {}
            return sched(num_classes=len(marginal), **extra)
        kw = {"num_classes": len(marginal)}
        if sched.config.prior_type == "marginal":
            kw["prior_probs"] = [float(x) for x in marginal]
        return type(sched).from_config(sched.config, **kw)

    return MoleculeSchedulers(pos=schedulers.pos, atoms=fit(schedulers.atoms, stats.atom_marginal),
                              charges=fit(schedulers.charges, stats.charge_marginal),
                              bonds=fit(schedulers.bonds, stats.bond_marginal))  # fmt: skip


class MoleculeDiffusionModule(DiffusionModule):
    """EQGAT-diff training: the weighted loss above with its schedulers; validation samples with DDIM and
    logs molecule and atom stability and RDKit validity. ``scheduler``: :class:`MoleculeSchedulers` (default:
    ``configs/scheduler/eqgat_diff.yaml``). Other keyword arguments (optimiser, EMA, lr schedule, validation
    cadence, ``init_from``) go to :class:`DiffusionModule`."""

    FAMILY = "molecules"
    PROGRESS = ("mol_stability", "connected_validity")

    def __init__(self, model: EQGATDiffDenoiser, scheduler: MoleculeSchedulers | None = None,
                 weight_pos: float = 3.0, weight_atoms: float = 0.4, weight_bonds: float = 2.0,
                 weight_charges: float = 1.0, val_num_samples: int = 32, val_sampling_steps: int = 50,
                 loss_normalisation: str = "geodiff", ot_alignment: bool = False, **kwargs):  # fmt: skip
        # EQGAT-diff trains with Adam (amsgrad) and an EMA decay of 0.9999
        super().__init__(model, **{"amsgrad": True, "ema_decay": 0.9999, **kwargs})
        scheduler = build("scheduler", "eqgat_diff") if scheduler is None else scheduler
        if not isinstance(scheduler, MoleculeSchedulers):
            raise GeodiffError(f"module.scheduler: a molecule model needs MoleculeSchedulers, got "
                               f"{type(scheduler).__name__} (scheduler=eqgat_diff)")  # fmt: skip
        self.config_schedulers = scheduler
        self.weights = LossWeights(weight_pos, weight_atoms, weight_bonds, weight_charges)
        if loss_normalisation not in ("geodiff", "reference"):
            raise GeodiffError(
                f"module.loss_normalisation: expected geodiff or reference, got {loss_normalisation!r}"
            )
        self.loss_normalisation = loss_normalisation
        if ot_alignment and not isinstance(scheduler.pos, E3FlowMatchScheduler):
            raise GeodiffError("module.ot_alignment: optimal-transport pairing is for flow matching "
                               "(scheduler=eqgat_flow); diffusion needs independent noise")  # fmt: skip
        self.ot_alignment = bool(ot_alignment)
        self.stats: DatasetStatistics | None = None
        self.vocab: MoleculeVocabulary | None = None
        self.schedulers_: MoleculeSchedulers | None = None
        self._training_smiles: SmilesSet | None = None

    def set_statistics(self, stats: DatasetStatistics, vocab: MoleculeVocabulary) -> None:
        self.stats, self.vocab = stats, vocab
        self.schedulers_ = with_data(self.config_schedulers, stats)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.stats is None and dm is not None:
            self.set_statistics(dm.statistics, dm.prepare().vocab)
        c, v = self.model.config, self.vocab
        want = (len(v.atoms), len(v.charges), len(v.bonds))
        have = (c.num_atom_types, c.num_charge_classes, c.num_bond_types)
        if want != have:
            raise GeodiffError(
                f"model: built for {have[0]} atom types / {have[1]} charges / {have[2]} bond types, the data "
                f"has {want[0]} ({', '.join(v.atoms)}) / {want[1]} / {want[2]}: "
                f"set model.num_atom_types={want[0]}"
            )

    def loss(self, model, batch, generator=None):
        return eqgat_diff_loss(model, batch, self.schedulers_, self.weights, generator=generator,
                               normalisation=self.loss_normalisation, ot=self.ot_alignment)  # fmt: skip

    def batch_device(self, batch):
        return batch.pos.device

    def sample_metrics(self, batch, batch_idx):
        """Molecule and atom stability (generated bonds, charge-aware valences) and RDKit validity of
        ``val_num_samples`` DDIM samples (a flow model: its own solver; seeded by process rank: under DDP
        every process adds its own)."""
        if not self.should_sample(batch_idx):
            return None
        from geodiff.metrics.chemistry import molecule_metrics
        from geodiff.pipelines.molecules import MoleculeDiffusionPipeline

        pipe = MoleculeDiffusionPipeline(self.ema.module, self.schedulers_, self.vocab, self.stats)
        flow = isinstance(self.schedulers_.pos, E3FlowMatchScheduler)
        sampler = None if flow else "ddim"  # a flow samples with its own solver
        out = pipe(num_samples=self.hparams.val_num_samples, sampler=sampler, seed=self.global_rank,
                   progress=False, num_inference_steps=self.hparams.val_sampling_steps)  # fmt: skip
        scores = molecule_metrics(out.molecules)
        keys = ("mol_stability", "atom_stability", "validity", "connected_validity")
        return {k: scores[k] for k in keys}

    def export_schedulers(self):
        s = self.schedulers_
        return {"scheduler_pos": s.pos, "scheduler_atoms": s.atoms, "scheduler_charges": s.charges,
                "scheduler_bonds": s.bonds}  # fmt: skip

    def describe(self):
        return {"vocab": self.vocab.to_dict(), "statistics": self.stats.to_dict()}

    def restore(self, meta):
        self.set_statistics(DatasetStatistics.from_dict(meta["statistics"]),
                            MoleculeVocabulary.from_dict(meta["vocab"]))  # fmt: skip

    def run_notes(self):
        return {"loss_weights": asdict(self.weights), "loss_normalisation": self.loss_normalisation,
                "ot_alignment": self.ot_alignment}  # fmt: skip

    def training_smiles(self) -> SmilesSet | None:
        """The hashed canonical SMILES of the training split (computed once, at the first export), or None
        without a molecule data module."""
        if self._training_smiles is None:
            trainer = getattr(self, "_trainer", None)
            dm = getattr(trainer, "datamodule", None)
            if dm is None or not hasattr(dm, "training_molecules"):
                return None
            source = f"training split of {dm.path}"
            self._training_smiles = SmilesSet.from_molecules(dm.training_molecules(), source=source)
        return self._training_smiles

    def export_extras(self, directory):
        """Write ``training_smiles.npz``, for novelty against the training molecules (``metrics.novelty``)."""
        smiles = self.training_smiles()
        if smiles is not None:
            smiles.save(directory / TRAINING_SMILES)
