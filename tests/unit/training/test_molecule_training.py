"""EQGAT-diff loss on real QM9 molecules: noised inputs are consistent, the loss trains."""

import torch

from geodiff.config import build
from geodiff.data.molecules import collate_molecules
from geodiff.manifolds import euclidean
from geodiff.models.eqgat_diff import EQGATDiffDenoiser, reverse_edge_permutation
from geodiff.training.molecules import eqgat_diff_loss, noisy_molecules, with_data


def make_schedulers(stats, T=100):
    """configs/scheduler/eqgat_diff.yaml with T steps, fitted to the data (class counts, marginal priors)."""
    return with_data(build("scheduler", "eqgat_diff", [f"pos.num_train_timesteps={T}"]), stats)


def test_config_schedulers_fit_the_data(qm9_small):
    stats = qm9_small.statistics()
    sch = make_schedulers(stats, T=30)
    assert sch.num_train_timesteps == 30 and sch.pos.config.prediction_type == "sample"
    for part, marginal in ((sch.atoms, stats.atom_marginal), (sch.charges, stats.charge_marginal),
                           (sch.bonds, stats.bond_marginal)):  # fmt: skip
        assert part.config.num_train_timesteps == 30 and part.config.num_classes == len(marginal)
        assert torch.allclose(part.prior, torch.as_tensor(marginal, dtype=torch.float64) / sum(marginal))
    uniform = with_data(build("scheduler", "eqgat_diff", ["bonds.prior_type=uniform"]), stats)
    assert uniform.bonds.config.prior_type == "uniform" and uniform.bonds.config.prior_probs is None
    again = with_data(sch, stats)  # refitting built schedulers keeps them
    assert again.atoms.config == sch.atoms.config


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


def test_self_conditioned_loss_feeds_the_first_prediction_in_half_the_batches(qm9_small):
    """A model built with ``self_condition``: in a random half of the batches the loss is that of a second
    prediction made with the first (detached, as probabilities) as input; the draw follows the generator;
    a model without it is called once, as before."""
    batch = collate_molecules([qm9_small[i] for i in range(6)])
    sch = make_schedulers(qm9_small.statistics())
    torch.manual_seed(0)
    model = EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1, self_condition=True)
    calls = []

    def record(_m, args, kwargs, out):
        calls.append((torch.is_grad_enabled(), kwargs.get("self_cond"), out))

    hook = model.register_forward_hook(record, with_kwargs=True)
    try:
        kinds = []
        for seed in range(12):
            calls.clear()
            eqgat_diff_loss(model, batch, sch, generator=torch.Generator().manual_seed(seed))
            kinds.append(len(calls))
            if (
                len(calls) == 2
            ):  # the first pass without gradient and without input, the second with its output
                (grad0, sc0, out0), (grad1, sc1, _) = calls
                assert not grad0 and sc0 is None and grad1
                expect = EQGATDiffDenoiser.self_cond_from(out0)
                for k in expect:
                    assert torch.equal(sc1[k], expect[k]), k
                assert torch.allclose(sc1["bonds"].sum(-1), torch.ones(len(sc1["bonds"])))
            else:
                assert calls[0][1] is None
        assert set(kinds) == {1, 2}  # both kinds of batch occur
        calls.clear()
        a = eqgat_diff_loss(model, batch, sch, generator=torch.Generator().manual_seed(3))["loss"]
        b = eqgat_diff_loss(model, batch, sch, generator=torch.Generator().manual_seed(3))["loss"]
        assert torch.equal(a, b)
    finally:
        hook.remove()
    plain = EQGATDiffDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=1)
    calls.clear()
    hook = plain.register_forward_hook(record, with_kwargs=True)
    try:
        for seed in range(4):
            eqgat_diff_loss(plain, batch, sch, generator=torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    assert len(calls) == 4 and all(sc is None for _, sc, _ in calls)
