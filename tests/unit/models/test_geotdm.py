"""GeoTDM denoiser and prior: E(3) equivariance (rotation, reflection, translation), permutation of nodes,
E(2) for pedestrians, prior weights summing to 1, save/load, bad input; float64."""

import pytest
import torch

from geodiff.data.nbody import simulate
from geodiff.data.trajectories import TrajectorySample, collate_trajectories, fully_connected
from geodiff.errors import GeodiffValueError
from geodiff.models.geotdm import PRIORS, GeoTDMDenoiser
from geodiff.testing import assert_equivariant


def charged_batch(num_systems=3, frames=12, seed=0):
    sim = simulate(num_systems, "charged", seed=seed)
    samples = []
    for s in range(num_systems):
        q = torch.from_numpy(sim["charges"][s]).double()
        ei = fully_connected(len(q))
        x = torch.from_numpy(sim["loc"][s, :frames]).double().transpose(0, 1)
        samples.append(TrajectorySample(x, q[:, None], ei, (q[ei[0]] * q[ei[1]])[:, None]))
    return collate_trajectories(samples)


def model(**kw):
    torch.manual_seed(0)
    m = GeoTDMDenoiser(hidden=16, num_layers=2, heads=2, time_dim=8, prior_layers=1, **kw).double().eval()
    # move every zero-initialised weight off zero so the position updates and the prior are exercised
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("prior", ["learnable", "last_frame"])
def test_conditional_denoiser_is_e3_and_permutation_equivariant(prior):
    b = charged_batch()
    m = model(num_cond=4, num_target=8, prior=prior)
    x_cond, x_noisy = b.x[:, :4], b.x[:, 4:] + 0.5 * torch.randn(b.x[:, 4:].shape, dtype=torch.float64)
    t = torch.tensor([10.0, 500.0, 900.0], dtype=torch.float64)

    def run(x_cond, x_noisy, h, batch, edge_index):
        eps = m(x_noisy, t, h, edge_index, b.edge_attr, batch, x_cond=x_cond)["eps"]
        return eps, m.prior(x_cond, h, edge_index, b.edge_attr, batch)

    with torch.no_grad():
        errs = assert_equivariant(run, [x_cond, x_noisy, b.h, b.batch, b.edge_index],
                                  ["node_position", "node_position", "node_scalar", "node_index",
                                   "edge_index"],
                                  ["node_vector", "node_position"])  # fmt: skip
    assert max(errs.values()) < 1e-9
    # the prior's output and eps must actually depend on the inputs (not a trivial zero)
    with torch.no_grad():
        eps, xr = run(x_cond, x_noisy, b.h, b.batch, b.edge_index)
    assert eps.abs().max() > 1e-3
    if prior == "learnable":
        assert (xr - x_cond[:, -1:]).abs().max() > 1e-3


def test_permutation_of_nodes_with_edge_features():
    """Edge features follow their edges: permute nodes and reorder the edge list consistently."""
    b = charged_batch(num_systems=1)
    m = model(num_cond=4, num_target=8)
    x_cond, x_noisy = b.x[:, :4], b.x[:, 4:]
    t = torch.tensor([300.0], dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(5)
    ei = inv[b.edge_index]  # node ids relabelled, same edge order: edge_attr still matches
    with torch.no_grad():
        a = m(x_noisy, t, b.h, b.edge_index, b.edge_attr, b.batch, x_cond=x_cond)["eps"]
        p = m(x_noisy[perm], t, b.h[perm], ei, b.edge_attr, b.batch, x_cond=x_cond[perm])["eps"]
        pa = m.prior(x_cond, b.h, b.edge_index, b.edge_attr, b.batch)
        pp = m.prior(x_cond[perm], b.h[perm], ei, b.edge_attr, b.batch)
    torch.testing.assert_close(p, a[perm], atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(pp, pa[perm], atol=1e-10, rtol=1e-9)


def test_unconditional_denoiser_equivariance():
    b = charged_batch(frames=10)
    m = model(num_cond=0, num_target=10)
    t = torch.tensor([1.0, 50.0, 999.0], dtype=torch.float64)

    def run(x, h, batch, edge_index):
        return m(x, t, h, edge_index, b.edge_attr, batch)["eps"]

    with torch.no_grad():
        errs = assert_equivariant(run, [b.x, b.h, b.batch, b.edge_index],
                                  ["node_position", "node_scalar", "node_index", "edge_index"],
                                  ["node_vector"])  # fmt: skip
    assert max(errs.values()) < 1e-9


def test_learnable_prior_weights_sum_to_one_and_start_at_last_frame():
    b = charged_batch()
    torch.manual_seed(0)
    fresh = GeoTDMDenoiser(hidden=16, num_layers=1, heads=2, num_cond=5, num_target=7).double()
    with torch.no_grad():
        xr = fresh.prior(b.x[:, :5], b.h, b.edge_index, b.edge_attr, b.batch)
    torch.testing.assert_close(xr, b.x[:, 4:5].expand(-1, 7, -1))  # untrained: the last observed frame
    m = model(num_cond=5, num_target=7)
    with torch.no_grad():
        w, _ = m.prior_weights(b.x[:, :5], b.h, b.edge_index, b.edge_attr)
    assert w.shape == (b.x.shape[0], 7, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2], dtype=torch.float64))
    assert w[..., :-1].abs().max() > 1e-3  # the learnable part is exercised


def test_fixed_priors():
    b = charged_batch()
    xc = b.x[:, :4]
    for prior in PRIORS:
        m = model(num_cond=4, num_target=3, prior=prior)
        with torch.no_grad():
            xr = m.prior(xc, b.h, b.edge_index, b.edge_attr, b.batch)
        assert xr.shape == (xc.shape[0], 3, 3)
        if prior == "last_frame":
            torch.testing.assert_close(xr[:, 1], xc[:, -1])
        if prior == "center_of_mass":
            torch.testing.assert_close(xr[0, 0], xc[b.batch == 0].mean((0, 1)))
        if prior == "zero":
            assert xr.abs().max() == 0


def test_two_dimensional_model_is_e2_equivariant():
    torch.manual_seed(1)
    n = 4
    ei = fully_connected(n)
    x = torch.randn(n, 9, 2, dtype=torch.float64)
    m = model(dim=2, num_cond=3, num_target=6)
    h, ea, batch = (
        torch.ones(n, 1, dtype=torch.float64),
        torch.ones(ei.shape[1], 1, dtype=torch.float64),
        torch.zeros(n, dtype=torch.long),
    )
    th = 0.7
    R = torch.tensor([[th, -1.0], [1.0, th]], dtype=torch.float64)
    R = R / R[:, 0].norm()
    F = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    shift = torch.tensor([2.0, -3.0], dtype=torch.float64)
    with torch.no_grad():
        base = m(x[:, 3:], 40, h, ei, ea, batch, x_cond=x[:, :3])["eps"]
        for Q in (R, F @ R):
            y = x @ Q.T + shift
            out = m(y[:, 3:], 40, h, ei, ea, batch, x_cond=y[:, :3])["eps"]
            torch.testing.assert_close(out, base @ Q.T, atol=1e-10, rtol=1e-9)
            xr = m.prior(y[:, :3], h, ei, ea, batch)
            torch.testing.assert_close(
                xr, m.prior(x[:, :3], h, ei, ea, batch) @ Q.T + shift, atol=1e-10, rtol=1e-9
            )


def test_mixed_sizes_in_one_batch_match_single_runs():
    torch.manual_seed(2)
    samples = []
    for n in (2, 5, 3):
        ei = fully_connected(n)
        one = dict(dtype=torch.float64)
        samples.append(TrajectorySample(torch.randn(n, 8, 2, **one), torch.ones(n, 1, **one), ei,
                                        torch.ones(ei.shape[1], 1, **one)))  # fmt: skip
    b = collate_trajectories(samples)
    m = model(dim=2, num_cond=3, num_target=5)
    t = torch.tensor([5.0, 50.0, 80.0], dtype=torch.float64)
    with torch.no_grad():
        joint = m(b.x[:, 3:], t, b.h, b.edge_index, b.edge_attr, b.batch, x_cond=b.x[:, :3])["eps"]
        for k, s in enumerate(samples):
            one = m(s.x[:, 3:], t[k : k + 1], s.h, s.edge_index, s.edge_attr,
                    torch.zeros(s.num_nodes, dtype=torch.long), x_cond=s.x[:, :3])["eps"]  # fmt: skip
            torch.testing.assert_close(joint[b.batch == k], one, atol=1e-10, rtol=1e-9)


def test_save_load_roundtrip(tmp_path):
    m = model(num_cond=4, num_target=8).float()
    m.save_pretrained(tmp_path)
    m2 = GeoTDMDenoiser.from_pretrained(tmp_path)
    b = charged_batch()
    args = (b.x[:, 4:].float(), 10, b.h.float(), b.edge_index, b.edge_attr.float(), b.batch)
    with torch.no_grad():
        torch.testing.assert_close(
            m(*args, x_cond=b.x[:, :4].float())["eps"], m2(*args, x_cond=b.x[:, :4].float())["eps"]
        )


def test_bad_input_is_reported():
    m = model(num_cond=4, num_target=8)
    b = charged_batch()
    with pytest.raises(GeodiffValueError, match="x_cond"):
        m(b.x[:, 4:], 10, b.h, b.edge_index, b.edge_attr, b.batch)
    with pytest.raises(GeodiffValueError, match="x_noisy"):
        m(b.x[:, 3:], 10, b.h, b.edge_index, b.edge_attr, b.batch, x_cond=b.x[:, :4])
    bad = b.x[:, 4:].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(GeodiffValueError, match="NaN"):
        m(bad, 10, b.h, b.edge_index, b.edge_attr, b.batch, x_cond=b.x[:, :4])
    with pytest.raises(GeodiffValueError, match="prior"):
        GeoTDMDenoiser(prior="mean")


def test_x0_prediction_is_translation_and_rotation_equivariant():
    """``prediction="sample"`` returns positions: they rotate, reflect and translate with the input."""
    b = charged_batch()
    m = model(num_cond=4, num_target=8, prediction="sample")
    t = torch.tensor([10.0, 500.0, 900.0], dtype=torch.float64)

    def run(x_cond, x_noisy, h, batch, edge_index):
        return m(x_noisy, t, h, edge_index, b.edge_attr, batch, x_cond=x_cond)["x0"]

    with torch.no_grad():
        errs = assert_equivariant(run, [b.x[:, :4], b.x[:, 4:], b.h, b.batch, b.edge_index],
                                  ["node_position", "node_position", "node_scalar", "node_index",
                                   "edge_index"], ["node_position"])  # fmt: skip
    assert max(errs.values()) < 1e-9 and m.output_key == "x0"
    with pytest.raises(GeodiffValueError, match="prediction"):
        GeoTDMDenoiser(prediction="velocity")


def _conditional_run(m, b, t):
    def run(x_cond, x_noisy, h, batch, edge_index):
        eps = m(x_noisy, t, h, edge_index, b.edge_attr, batch, x_cond=x_cond)["eps"]
        return eps, m.prior(x_cond, h, edge_index, b.edge_attr, batch)

    return run


_KINDS = ["node_position", "node_position", "node_scalar", "node_index", "edge_index"]


def test_plain_backbone_is_only_permutation_equivariant():
    """The control of the symmetry study: attention on raw coordinates; nodes may be permuted, but a
    rotation or a translation of the input changes the prediction."""
    b = charged_batch()
    m = model(num_cond=4, num_target=8, backbone="plain")
    t = torch.tensor([10.0, 500.0, 900.0], dtype=torch.float64)
    inputs = [b.x[:, :4], b.x[:, 4:] + 0.3, b.h, b.batch, b.edge_index]
    run = _conditional_run(m, b, t)
    with torch.no_grad():
        assert_equivariant(run, inputs, _KINDS, ["node_vector", "node_position"], rotations=False,
                           reflections=False, translations=False)  # fmt: skip
        for family in ("rotations", "translations"):
            flags = dict(rotations=False, reflections=False, translations=False, permutations=False)
            with pytest.raises(AssertionError, match=family[:-1]):
                assert_equivariant(run, inputs, _KINDS, ["node_vector", "node_position"],
                                   **{**flags, family: True})  # fmt: skip


@pytest.mark.parametrize("backbone", ["plain", "egtn"])
def test_frame_averaging_makes_the_plain_backbone_e3_equivariant(backbone):
    b = charged_batch()
    m = model(num_cond=4, num_target=8, backbone=backbone, frame_averaging="E")
    t = torch.tensor([10.0, 500.0, 900.0], dtype=torch.float64)
    with torch.no_grad():
        errs = assert_equivariant(_conditional_run(m, b, t), [b.x[:, :4], b.x[:, 4:] + 0.3, b.h, b.batch,
                                  b.edge_index], _KINDS, ["node_vector", "node_position"])  # fmt: skip
    assert max(errs.values()) < 1e-9


def test_frame_averaged_plain_2d_model_and_roundtrip(tmp_path):
    """E(2) frame averaging of the plain backbone for pedestrians; its export loads and agrees."""
    torch.manual_seed(1)
    n = 4
    ei = fully_connected(n)
    x = torch.randn(n, 9, 2, dtype=torch.float64) * torch.tensor([2.0, 0.7], dtype=torch.float64)
    m = model(dim=2, num_cond=3, num_target=6, backbone="plain", frame_averaging="E")
    h, ea, batch = torch.ones(n, 1, dtype=torch.float64), torch.ones(ei.shape[1], 1, dtype=torch.float64), \
        torch.zeros(n, dtype=torch.long)  # fmt: skip
    a = torch.tensor(0.9, dtype=torch.float64)
    R = torch.stack([torch.stack([a.cos(), -a.sin()]), torch.stack([a.sin(), a.cos()])])
    shift = torch.tensor([2.0, -3.0], dtype=torch.float64)
    with torch.no_grad():
        base = m(x[:, 3:], 40, h, ei, ea, batch, x_cond=x[:, :3])["eps"]
        for Q in (R, torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)) @ R):
            y = x @ Q.T + shift
            torch.testing.assert_close(m(y[:, 3:], 40, h, ei, ea, batch, x_cond=y[:, :3])["eps"], base @ Q.T,
                                       atol=1e-10, rtol=1e-9)  # fmt: skip
    m.save_pretrained(tmp_path)
    m2 = GeoTDMDenoiser.from_pretrained(tmp_path).double()
    assert m2.config.backbone == "plain" and m2.config.frame_averaging == "E"
    with torch.no_grad():
        torch.testing.assert_close(m2(x[:, 3:], 40, h, ei, ea, batch, x_cond=x[:, :3])["eps"], base)
    for bad in (dict(backbone="mlp"), dict(frame_averaging="O")):
        with pytest.raises(GeodiffValueError, match=next(iter(bad))):
            GeoTDMDenoiser(**bad)
