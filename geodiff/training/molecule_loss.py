"""The EQGAT-diff training objective (Le et al., ICLR 2024).

Per molecule, with ``t`` drawn uniformly from the training timesteps:

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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geodiff.data.molecules import MoleculeBatch
from geodiff.manifolds import euclidean
from geodiff.models.eqgat_diff import reverse_edge_permutation
from geodiff.nn.scatter import scatter_mean
from geodiff.schedulers import CategoricalD3PMScheduler, E3DDPMScheduler

__all__ = ["MoleculeSchedulers", "LossWeights", "eqgat_diff_loss", "noisy_molecules"]


@dataclass
class MoleculeSchedulers:
    """The four schedulers of a molecule diffusion model (they share T)."""

    pos: E3DDPMScheduler
    atoms: CategoricalD3PMScheduler
    charges: CategoricalD3PMScheduler
    bonds: CategoricalD3PMScheduler

    @property
    def num_train_timesteps(self) -> int:
        return self.pos.config.num_train_timesteps


@dataclass
class LossWeights:
    pos: float = 3.0
    atoms: float = 0.4
    bonds: float = 2.0
    charges: float = 1.0


def noisy_molecules(batch: MoleculeBatch, schedulers: MoleculeSchedulers, t: torch.Tensor,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Forward-noise a batch at per-graph timesteps ``t``; returns the noisy model inputs and the targets."""
    num_graphs = batch.num_graphs
    dtype = batch.pos.dtype
    x0 = euclidean.remove_mean(batch.pos, batch.batch, num_graphs)
    eps = torch.randn(x0.shape, generator=generator, dtype=dtype, device=x0.device)
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
) -> dict[str, torch.Tensor]:
    """The weighted EQGAT-diff loss and its components (each a scalar tensor)."""
    weights = weights or LossWeights()
    G, T = batch.num_graphs, schedulers.num_train_timesteps
    device = batch.pos.device
    if t is None:
        t = torch.randint(0, T, (G,), generator=generator, device=generator.device if generator else device)
        t = t.to(device)
    noisy = noisy_molecules(batch, schedulers, t, generator)
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
    per_graph = w * (weights.pos * l_pos + weights.atoms * l_atoms + weights.bonds * l_bonds
                     + weights.charges * l_charges)  # fmt: skip
    return {
        "loss": per_graph.mean(),
        "pos": l_pos.mean().detach(),
        "atoms": l_atoms.mean().detach(),
        "charges": l_charges.mean().detach(),
        "bonds": l_bonds.mean().detach(),
    }
