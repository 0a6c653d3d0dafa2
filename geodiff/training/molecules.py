"""Lightning training of EQGAT-diff on 3D molecules: data module, module (loss, Adam, EMA), export.

The module trains :class:`~geodiff.models.eqgat_diff.EQGATDiffDenoiser` with the EQGAT-diff objective
(:mod:`geodiff.training.molecule_loss`). Dataset statistics (marginals for the D3PM priors, the atom-count
histogram for sampling) come from the data module and travel with the checkpoint. ``export_pretrained``
writes what sampling needs and nothing that executes on load: the EMA denoiser (safetensors + config.json),
the four scheduler configs and ``molecules.json`` (vocabulary and statistics).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from pathlib import Path

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Subset

from geodiff.data.molecules import DatasetStatistics, MoleculeDataset, MoleculeVocabulary, collate_molecules
from geodiff.errors import GeodiffError
from geodiff.io import atomic_path, atomic_save_pretrained, device_description
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.schedulers import CategoricalD3PMScheduler, E3DDPMScheduler
from geodiff.training.export import model_with_ema, training_record
from geodiff.training.molecule_loss import LossWeights, MoleculeSchedulers, eqgat_diff_loss
from geodiff.training.optim import check_lr_schedule, describe_lr_schedule, optimizer_config

__all__ = ["MoleculeDataModule", "MoleculeDiffusionModule", "ExportCallback", "make_schedulers"]


def make_schedulers(stats: DatasetStatistics, num_train_timesteps: int = 500) -> MoleculeSchedulers:
    """EQGAT-diff's schedulers: cosine (s = 0.008) for all, x0-prediction for positions, marginal priors."""
    T = num_train_timesteps
    return MoleculeSchedulers(
        pos=E3DDPMScheduler(num_train_timesteps=T, beta_schedule="cosine", prediction_type="sample"),
        atoms=CategoricalD3PMScheduler(len(stats.atom_marginal), T, prior_probs=stats.atom_marginal),
        charges=CategoricalD3PMScheduler(len(stats.charge_marginal), T, prior_probs=stats.charge_marginal),
        bonds=CategoricalD3PMScheduler(len(stats.bond_marginal), T, prior_probs=stats.bond_marginal),
    )


def _detect_format(path: Path) -> str:
    if path.suffix == ".npz":
        return "qm9_npz"
    if path.suffix == ".sdf" or (path.is_dir() and any(path.glob("*.sdf"))):
        return "sdf"
    if path.name.endswith((".tar.bz2", ".tar")) or (path.is_dir() and any(path.glob("*.xyz"))):
        return "qm9_xyz"
    raise GeodiffError(f"data: cannot tell the format of {path} (set data.format to qm9_npz, qm9_xyz or sdf)")


class MoleculeDataModule(L.LightningDataModule):
    """Molecules from a QM9 npz (EDM layout, cached), QM9 xyz files, or SDF (GEOM-Drugs style, your own);
    bonds are perceived with RDKit where the format has none; a seeded random validation split."""

    def __init__(self, path: str, format: str = "auto", cache_dir: str | None = ".cache/geodiff",
                 limit: int | None = None, atoms: list[str] | None = None,
                 val_fraction: float = 0.05, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0, kekulize: bool = True):  # fmt: skip
        super().__init__()
        self.path, self.format, self.cache_dir, self.limit = path, format, cache_dir, limit
        self.kekulize = kekulize
        self.atoms = tuple(atoms) if atoms else None  # fixed element vocabulary for SDF input
        self.val_fraction, self.batch_size, self.num_workers, self.seed = (
            val_fraction,
            batch_size,
            num_workers,
            seed,
        )
        self.dataset: MoleculeDataset | None = None

    def prepare(self) -> MoleculeDataset:
        if self.dataset is None:
            from geodiff.data.molecules import dataset_from_qm9_xyz, dataset_from_sdf

            path = Path(self.path)
            if not path.exists():
                raise GeodiffError(f"data: {self.path} not found (point data.path at a QM9 npz, xyz or SDF)")
            fmt = _detect_format(path) if self.format == "auto" else self.format
            if fmt == "qm9_npz":
                self.dataset = MoleculeDataset.from_qm9_npz(path, cache_dir=self.cache_dir, limit=self.limit,
                                                            kekulize=self.kekulize)  # fmt: skip
            elif fmt == "qm9_xyz":
                self.dataset = dataset_from_qm9_xyz(path, limit=self.limit, kekulize=self.kekulize)
            elif fmt == "sdf":
                vocab = MoleculeVocabulary(self.atoms) if self.atoms else None
                self.dataset = dataset_from_sdf(path, vocab=vocab, limit=self.limit, kekulize=self.kekulize)
            else:
                raise GeodiffError(f"data.format: expected auto, qm9_npz, qm9_xyz or sdf, got {fmt!r}")
            if self.dataset.failures:
                total = len(self.dataset) + len(self.dataset.failures)
                print(f"data: skipped {len(self.dataset.failures)} of {total} "
                      "molecules whose bonds RDKit could not perceive")  # fmt: skip
            n = len(self.dataset)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_val = max(1, int(round(self.val_fraction * n))) if self.val_fraction > 0 else 0
            self.val_idx, self.train_idx = perm[:n_val], perm[n_val:]
        return self.dataset

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    @property
    def statistics(self) -> DatasetStatistics:
        ds = self.prepare()
        return MoleculeDataset.from_records([ds[i] for i in self.train_idx], ds.vocab).statistics()

    def _loader(self, idx, shuffle):
        return DataLoader(Subset(self.prepare(), idx), batch_size=self.batch_size, shuffle=shuffle,
                          collate_fn=collate_molecules, num_workers=self.num_workers)  # fmt: skip

    def train_dataloader(self):
        return self._loader(self.train_idx, True)

    def val_dataloader(self):
        return self._loader(self.val_idx, False)


class MoleculeDiffusionModule(L.LightningModule):
    """EQGAT-diff training: loss 3/0.4/2/1 with clamp(SNR, 0.05, 1.5), Adam, EMA of the weights."""

    def __init__(self, model: EQGATDiffDenoiser, num_train_timesteps: int = 500, lr: float = 5e-4,
                 ema_decay: float = 0.9999, weight_pos: float = 3.0, weight_atoms: float = 0.4,
                 weight_bonds: float = 2.0, weight_charges: float = 1.0, val_sample_every_n_epochs: int = 0,
                 val_num_samples: int = 32, val_sampling_steps: int = 50,
                 init_from: str | None = None, lr_schedule: str = "constant",
                 lr_decay_steps: int | None = None, lr_min_ratio: float = 0.05):  # fmt: skip
        super().__init__()
        check_lr_schedule(lr_schedule, lr_decay_steps, lr_min_ratio)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.ema, self.parent_training = model_with_ema(model, ema_decay, init_from)
        self.weights = LossWeights(weight_pos, weight_atoms, weight_bonds, weight_charges)
        self.stats: DatasetStatistics | None = None
        self.vocab: MoleculeVocabulary | None = None
        self.schedulers_: MoleculeSchedulers | None = None

    def set_statistics(self, stats: DatasetStatistics, vocab: MoleculeVocabulary) -> None:
        self.stats, self.vocab = stats, vocab
        self.schedulers_ = make_schedulers(stats, self.hparams.num_train_timesteps)

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

    def training_step(self, batch, batch_idx):
        out = eqgat_diff_loss(self.model, batch, self.schedulers_, self.weights)
        self.log_dict({f"train/{k}": v for k, v in out.items()}, batch_size=batch.num_graphs, prog_bar=False)
        self.log("loss", out["loss"], prog_bar=True, batch_size=batch.num_graphs)
        return out["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(self.model)

    def validation_step(self, batch, batch_idx):
        g = torch.Generator(device=batch.pos.device).manual_seed(1000 + batch_idx)  # same noise every epoch
        out = eqgat_diff_loss(self.ema.module, batch, self.schedulers_, self.weights, generator=g)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=batch.num_graphs, prog_bar=False)
        self.log("val_loss", out["loss"], prog_bar=True, batch_size=batch.num_graphs)

    def on_validation_epoch_end(self) -> None:
        """Every ``val_sample_every_n_epochs`` epochs: sample with the EMA model, log molecule and atom
        stability (generated bonds, charge-aware valences) and RDKit validity."""
        every = self.hparams.val_sample_every_n_epochs
        if not every or self.trainer.sanity_checking or (self.current_epoch + 1) % every:
            return
        from geodiff.metrics.chemistry import molecule_metrics
        from geodiff.pipelines.molecules import MoleculeDiffusionPipeline

        pipe = MoleculeDiffusionPipeline(self.ema.module, self.schedulers_, self.vocab, self.stats)
        records = pipe(num_samples=self.hparams.val_num_samples, sampler="ddim", seed=0, progress=False,
                       num_inference_steps=self.hparams.val_sampling_steps)  # fmt: skip
        self.ema.module.train(self.model.training)
        scores = molecule_metrics(records, self.vocab)  # records -> molecules once, for every metric
        self.log("val/mol_stability", scores["mol_stability"], prog_bar=True)
        self.log("val/atom_stability", scores["atom_stability"])
        self.log("val/validity", scores["validity"])
        self.log("val/connected_validity", scores["connected_validity"], prog_bar=True)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.Adam(self.model.parameters(), lr=h.lr, amsgrad=True)
        return optimizer_config(opt, h.lr_schedule, self.trainer, h.lr_decay_steps, h.lr_min_ratio)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["geodiff"] = {"statistics": self.stats.to_dict(), "vocab": self.vocab.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("geodiff")
        if meta:
            self.set_statistics(DatasetStatistics.from_dict(meta["statistics"]),
                                MoleculeVocabulary.from_dict(meta["vocab"]))  # fmt: skip

    def export_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the EMA model, the schedulers and molecules.json into ``directory`` (atomically per file)."""
        directory = Path(directory)
        model = copy.deepcopy(self.ema.module).float().cpu()
        atomic_save_pretrained(model, directory / "model")
        s = self.schedulers_
        for name, sched in (("pos", s.pos), ("atoms", s.atoms), ("charges", s.charges), ("bonds", s.bonds)):
            atomic_save_pretrained(sched, directory / f"scheduler_{name}")
        meta = {
            "family": "molecules",
            "vocab": self.vocab.to_dict(),
            "statistics": self.stats.to_dict(),
            "training": training_record(
                int(self.global_step), int(self.current_epoch), extra, self.parent_training
            ),
        }
        with atomic_path(directory / "molecules.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return directory


class ExportCallback(L.Callback):
    """Export the EMA model (safetensors) every ``every_n_epochs`` epochs and at the end of training, with
    a record of the run: ``command`` (the command line that started it), hardware, wall time, batch size,
    the loss weights, the last validation loss and the model it was warm-started from."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1, command: str | None = None):
        self.dirpath, self.every, self.command = dirpath, every_n_epochs, command
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def run_record(self, trainer, pl_module) -> dict:
        """What this run adds to the export's training record."""
        record: dict = {}
        if self.command:
            record["command"] = self.command
        where = device_description(pl_module.device)
        if trainer.num_devices > 1:
            where = f"{trainer.num_devices} x {where}"
        record["hardware"] = f"{where}, torch {torch.__version__}, precision {trainer.precision}"
        if self._start is not None:
            minutes = (time.monotonic() - self._start) / 60
            record["wall_time"] = f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
        datamodule = getattr(trainer, "datamodule", None)
        batch_size = getattr(datamodule, "batch_size", None)
        if isinstance(batch_size, int):
            record["batch_size"] = batch_size
        kekulize = getattr(datamodule, "kekulize", None)
        if isinstance(kekulize, bool):
            record["bonds"] = "Kekule form (data.kekulize=true)" if kekulize else "aromatic bonds kept"
        h = pl_module.hparams
        schedule = describe_lr_schedule(h.get("lr_schedule", "constant"), h.get("lr"), trainer,
                                        h.get("lr_decay_steps"), h.get("lr_min_ratio", 1.0))  # fmt: skip
        if schedule:
            record["lr_schedule"] = schedule
        init_from = h.get("init_from")
        if init_from:
            record["init_from"] = str(init_from)
        weights = getattr(pl_module, "weights", None)
        if dataclasses.is_dataclass(weights):
            record["loss_weights"] = dataclasses.asdict(weights)
        val = trainer.callback_metrics.get("val_loss")
        if val is not None:
            record["final_val_loss"] = round(float(val), 4)
        return record

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every == 0 and trainer.is_global_zero:
            pl_module.export_pretrained(self.dirpath, self.run_record(trainer, pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            pl_module.export_pretrained(self.dirpath, self.run_record(trainer, pl_module))
