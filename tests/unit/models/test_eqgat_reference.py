"""The reference EQGAT-diff network (``model=eqgat_diff_reference``): equivariance in float64 (rotation,
reflection, translation, permutation), symmetric bonds, zero-CoM positions, graphs that do not interact, the
reference's normalisation and position norm, save/load through the molecule pipeline, a few training steps."""

import pytest
import torch

from geodiff.config import build
from geodiff.data.molecules import collate_molecules
from geodiff.errors import GeodiffValueError
from geodiff.manifolds import euclidean
from geodiff.models.eqgat_diff import reverse_edge_permutation
from geodiff.models.eqgat_reference import EQGATReferenceDenoiser
from geodiff.nn.eqgat_reference import GraphLayerNorm, SE3Norm, edge_attributes
from tests.unit.models.test_eqgat_diff import equivariance_errors, noisy_inputs


def reference_model(layers=3):
    torch.manual_seed(0)
    return EQGATReferenceDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=layers).double().eval()


def test_reference_network_is_e3_and_permutation_equivariant(qm9_small):
    errs = equivariance_errors(reference_model(), noisy_inputs(qm9_small))
    assert max(errs.values()) < 1e-10, errs


def test_outputs_symmetric_bonds_zero_com_and_separate_graphs(qm9_small):
    model = reference_model()
    pos, atoms, charges, bonds, t, batch, ei = noisy_inputs(qm9_small)
    with torch.no_grad():
        out = model(pos, atoms, charges, bonds, t, batch, ei)
    assert out["pos"].shape == pos.shape and out["bonds"].shape == bonds.shape
    assert out["atoms"].shape == atoms.shape and out["charges"].shape == charges.shape
    assert euclidean.center_of_mass(out["pos"], batch).abs().max() < 1e-12
    rev = reverse_edge_permutation(ei, pos.shape[0])
    torch.testing.assert_close(out["bonds"], out["bonds"][rev])  # symmetric by construction
    n0 = int((batch == 0).sum())
    keep = batch[ei[0]] == 0
    with torch.no_grad():  # the graph-wise normalisation must not mix molecules of one batch
        alone = model(pos[:n0], atoms[:n0], charges[:n0], bonds[keep], t[:1], batch[:n0], ei[:, keep])
    torch.testing.assert_close(alone["pos"], out["pos"][:n0])
    torch.testing.assert_close(alone["bonds"], out["bonds"][keep])
    with pytest.raises(GeodiffValueError, match="no self-conditioning"):
        model(pos, atoms, charges, bonds, t, batch, ei, self_cond={"pos": pos})


def test_reference_normalisations_as_the_code_runs():
    # modules.py LayerNorm: centred by the graph's mean, divided by the mean square (no square root);
    # vectors divided by the graph's mean squared norm
    g = torch.Generator().manual_seed(0)
    s, v = (
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 3, 2, generator=g, dtype=torch.float64),
    )
    batch = torch.tensor([0, 0, 0, 1, 1])
    norm = GraphLayerNorm(4).double()
    s2, v2 = norm(s, v, batch, 2)
    first = s[:3] - s[:3].mean()
    torch.testing.assert_close(s2[:3], first / first.pow(2).mean())
    torch.testing.assert_close(v2[:3], v[:3] / v[:3].pow(2).sum(1).mean())
    # SE3Norm: x / (mean norm over the molecule + 1e-5), times a learned scalar
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    out = SE3Norm().double()(x, batch, 2)
    torch.testing.assert_close(out[3:], x[3:] / (x[3:].norm(dim=-1).mean() + 1e-5))
    # edge attributes of gnn.py calculate_edge_attrs: r = (p_i - p_j) / (1 + d), a = p_i . p_j
    p = torch.randn(3, 3, generator=g, dtype=torch.float64)
    d, a, r = edge_attributes(p, torch.tensor([[0], [1]]))
    torch.testing.assert_close(d[0, 0], (p[1] - p[0]).norm())
    torch.testing.assert_close(a[0, 0], p[1] @ p[0])
    torch.testing.assert_close(r[0], (p[1] - p[0]) / (1 + (p[1] - p[0]).norm()))


def test_trains_exports_and_samples_through_the_molecule_pipeline(qm9_small, tmp_path):
    from geodiff.pipelines.molecules import MoleculeDiffusionPipeline
    from geodiff.training.molecules import eqgat_diff_loss, with_data

    stats = qm9_small.statistics()
    sch = with_data(build("scheduler", "eqgat_diff", ["pos.num_train_timesteps=20"]), stats)
    torch.manual_seed(0)
    model = EQGATReferenceDenoiser(s_dim=16, v_dim=4, e_dim=4, num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = collate_molecules([qm9_small[i] for i in range(6)])
    for step in range(3):
        loss = eqgat_diff_loss(model, batch, sch, generator=torch.Generator().manual_seed(step),
                               normalisation="reference")["loss"]  # fmt: skip
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())  # every weight takes part (DDP)
        opt.step()
    pipe = MoleculeDiffusionPipeline(model.eval(), sch, qm9_small.vocab, stats)
    out = pipe(num_samples=3, num_inference_steps=4, sampler="ddim", seed=0, progress=False)
    assert len(out.molecules) == 3
    model.save_pretrained(tmp_path / "model")
    assert MoleculeDiffusionPipeline.model_class(tmp_path / "model") is EQGATReferenceDenoiser
    back = EQGATReferenceDenoiser.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(dict(back.state_dict()), dict(model.state_dict()))
