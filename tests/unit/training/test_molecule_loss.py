"""EQGAT-diff loss on real QM9 molecules: noised inputs are consistent, the loss trains."""

import torch

from geodiff.data.molecules import collate_molecules
from geodiff.manifolds import euclidean
from geodiff.models.eqgat_diff import EQGATDiffDenoiser, reverse_edge_permutation
from geodiff.schedulers import CategoricalD3PMScheduler, E3DDPMScheduler
from geodiff.training.molecule_loss import MoleculeSchedulers, eqgat_diff_loss, noisy_molecules


def make_schedulers(stats, T=100):
    return MoleculeSchedulers(
        pos=E3DDPMScheduler(num_train_timesteps=T, prediction_type="sample"),
        atoms=CategoricalD3PMScheduler(num_classes=5, num_train_timesteps=T, prior_probs=stats.atom_marginal),
        charges=CategoricalD3PMScheduler(
            num_classes=6, num_train_timesteps=T, prior_probs=stats.charge_marginal
        ),
        bonds=CategoricalD3PMScheduler(num_classes=5, num_train_timesteps=T, prior_probs=stats.bond_marginal),
    )


def test_noised_molecules_are_symmetric_and_centred(qm9_small):
    batch = collate_molecules([qm9_small[i] for i in range(6)])
    sch = make_schedulers(qm9_small.statistics())
    t = torch.tensor([0, 10, 50, 80, 99, 99])
    noisy = noisy_molecules(batch, sch, t, torch.Generator().manual_seed(0))
    rev = reverse_edge_permutation(batch.edge_index, batch.pos.shape[0])
    assert torch.equal(noisy["bonds"], noisy["bonds"][rev])
    assert euclidean.center_of_mass(noisy["pos"], batch.batch).abs().max() < 1e-5
    for key in ("atoms", "charges", "bonds"):
        assert torch.equal(noisy[key].sum(-1), torch.ones(noisy[key].shape[0]))
    # the charge prior is QM9's marginal (all neutral): noised charges stay neutral
    assert bool((noisy["charges"].argmax(-1) == 2).all())


def test_loss_is_finite_and_decreases_when_overfitting(qm9_small):
    torch.manual_seed(0)
    batch = collate_molecules([qm9_small[i] for i in range(8)])
    sch = make_schedulers(qm9_small.statistics())
    model = EQGATDiffDenoiser(s_dim=32, v_dim=8, e_dim=8, num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = torch.full((batch.num_graphs,), 20)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(40):
        out = eqgat_diff_loss(model, batch, sch, generator=g, t=t)
        assert torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    with torch.no_grad():
        final = eqgat_diff_loss(model, batch, sch, generator=torch.Generator().manual_seed(0), t=t)[
            "loss"
        ].item()
    assert final < 0.5 * first, (first, final)
