"""EQGAT-diff denoiser: equivariance (rotation, reflection, translation, permutation), mixed-size batches,
symmetric bond logits, save/load, bad input."""

import pytest
import torch
import torch.nn.functional as F

from geodiff.data.molecules import collate_molecules
from geodiff.errors import GeodiffValueError
from geodiff.models.eqgat_diff import EQGATDiffDenoiser, reverse_edge_permutation
from geodiff.testing import assert_equivariant


def small_model():
    torch.manual_seed(0)
    return EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=2).double().eval()


def noisy_inputs(qm9_small):
    b = collate_molecules([qm9_small[i] for i in (0, 3, 11)])  # graphs of different sizes
    g = torch.Generator().manual_seed(1)
    pos = b.pos.double() + 0.3 * torch.randn(b.pos.shape, generator=g, dtype=torch.float64)
    atoms = F.one_hot(b.atom_types, 5).double()
    charges = F.one_hot(b.charges, 6).double()
    bonds = F.one_hot(b.edge_types, 5).double()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    return pos, atoms, charges, bonds, t, b.batch, b.edge_index


# what a molecule denoiser reads and returns (pos, atoms, charges, bonds, t, batch, edge_index -> pos, atoms,
# charges, bonds); x0 is zero-CoM: it ignores translations
KINDS_IN = [
    "node_position",
    "node_scalar",
    "node_scalar",
    "invariant",
    "invariant",
    "node_index",
    "edge_index",
]
KINDS_OUT = ["node_vector", "node_scalar", "node_scalar", "invariant"]


def as_tuple(model):
    """``model``'s call with its dict output as a tuple in ``KINDS_OUT`` order."""

    def run(pos, atoms, charges, bonds, t, batch, edge_index):
        out = model(pos, atoms, charges, bonds, t, batch, edge_index)
        return out["pos"], out["atoms"], out["charges"], out["bonds"]

    return run


def equivariance_errors(model, inputs) -> dict:
    """Largest error per family (rotation, reflection, translation, permutation) of the denoiser's outputs."""
    with torch.no_grad():
        return assert_equivariant(as_tuple(model), list(inputs), KINDS_IN, KINDS_OUT)


def test_denoiser_is_e3_and_permutation_equivariant(qm9_small):
    errs = equivariance_errors(small_model(), noisy_inputs(qm9_small))
    assert max(errs.values()) < 1e-10


def test_outputs_shapes_zero_com_and_symmetric_bonds(qm9_small):
    model = small_model()
    pos, atoms, charges, bonds, t, batch, ei = noisy_inputs(qm9_small)
    with torch.no_grad():
        out = model(pos, atoms, charges, bonds, t, batch, ei)
    assert out["pos"].shape == pos.shape and out["atoms"].shape == atoms.shape
    assert out["charges"].shape == charges.shape and out["bonds"].shape == bonds.shape
    from geodiff.manifolds import euclidean

    assert euclidean.center_of_mass(out["pos"], batch).abs().max() < 1e-12
    rev = reverse_edge_permutation(ei, pos.shape[0])
    assert torch.equal(out["bonds"], out["bonds"][rev])


def test_graphs_in_one_batch_do_not_interact(qm9_small):
    model = small_model()
    pos, atoms, charges, bonds, t, batch, ei = noisy_inputs(qm9_small)
    with torch.no_grad():
        full = model(pos, atoms, charges, bonds, t, batch, ei)
        b0 = collate_molecules([qm9_small[0]])
        n0 = b0.pos.shape[0]
        keep = batch[ei[0]] == 0
        alone = model(pos[:n0], atoms[:n0], charges[:n0], bonds[keep], t[:1], batch[:n0], ei[:, keep])
    torch.testing.assert_close(alone["pos"], full["pos"][:n0])
    torch.testing.assert_close(alone["bonds"], full["bonds"][keep])


def test_save_load_round_trip(tmp_path, qm9_small):
    model = small_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = EQGATDiffDenoiser.from_pretrained(tmp_path).double().eval()
    inputs = noisy_inputs(qm9_small)
    with torch.no_grad():
        a, b = model(*inputs), loaded(*inputs)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_bad_input(qm9_small):
    model = small_model()
    pos, atoms, charges, bonds, t, batch, ei = noisy_inputs(qm9_small)
    with pytest.raises(GeodiffValueError, match="atom_types"):
        model(pos, atoms[:, :4], charges, bonds, t, batch, ei)
    with pytest.raises(GeodiffValueError, match="bonds"):
        model(pos, atoms, charges, bonds[:-1], t, batch, ei)
    bad = pos.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(GeodiffValueError, match="pos"):
        model(bad, atoms, charges, bonds, t, batch, ei)
    with pytest.raises(GeodiffValueError, match="reverse"):
        reverse_edge_permutation(torch.tensor([[0], [1]]), 2)


def test_deeper_model_loads_a_shallower_one_and_computes_the_same(qm9_small):
    """``grow_from_`` (``module.init_from`` with more ``model.num_layers``): the trained layers go first, the
    new ones start as the identity, so the outputs are the shallower model's exactly; still equivariant once
    the new layers have moved; a deeper source or another width is an error."""
    src = small_model()
    torch.manual_seed(5)
    deep = EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=4).double().eval()
    assert deep.grow_from_(src) == {"new_layers": 2, "edge_copies": 1, "self_condition": False}
    inputs = noisy_inputs(qm9_small)
    with torch.no_grad():
        a, b = src(*inputs), deep(*inputs)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with torch.no_grad():  # a few training steps later: the new layers are no longer the identity
        for prm in deep.layers[2:].parameters():
            prm.add_(0.05 * torch.randn_like(prm))

    errs = equivariance_errors(deep, inputs)
    assert max(errs.values()) < 1e-10
    with pytest.raises(GeodiffValueError, match="more layers"):
        small_model().grow_from_(deep)
    with pytest.raises(GeodiffValueError, match="besides the depth and edge width"):
        EQGATDiffDenoiser(s_dim=32, v_dim=8, e_dim=8, num_layers=4).double().grow_from_(src)
    with pytest.raises(GeodiffValueError, match="whole multiple"):
        EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=12, num_layers=2).double().grow_from_(src)


@pytest.mark.parametrize("e_dim,num_layers", [(16, 2), (24, 3)])
def test_wider_edges_load_a_narrower_model_and_compute_the_same(qm9_small, e_dim, num_layers):
    """``grow_from_`` with a whole multiple of the edge channels (and optionally more layers): every channel
    copied, the weights that read them split among the copies, so the outputs are the source's up to
    rounding; the copies get different gradients (they do not stay duplicates); still equivariant after the
    weights have moved."""
    src = small_model()
    torch.manual_seed(7)
    wide = EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=e_dim, num_layers=num_layers).double().eval()
    assert wide.grow_from_(src) == {
        "new_layers": num_layers - 2,
        "edge_copies": e_dim // 8,
        "self_condition": False,
    }
    inputs = noisy_inputs(qm9_small)
    with torch.no_grad():
        a, b = src(*inputs), wide(*inputs)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-11, msg=k)

    out = wide(*inputs)  # one backward pass: the copies of an edge channel are pushed apart
    (out["bonds"].pow(2).sum() + out["pos"].pow(2).sum()).backward()
    grad = wide.edge_embed.weight.grad
    assert (grad[:8] - grad[8:16]).abs().max() > 1e-6 * grad.abs().max()
    assert torch.equal(wide.edge_embed.weight[:8], wide.edge_embed.weight[8:16])
    same = EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=e_dim, num_layers=num_layers).double()
    same.grow_from_(src)  # the default seed: the same split shares
    assert torch.equal(same.bond_head[0].weight, wide.bond_head[0].weight)

    with torch.no_grad():
        for prm in wide.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    errs = equivariance_errors(wide, inputs)
    assert max(errs.values()) < 1e-10


def self_cond_model(seed=3):
    torch.manual_seed(seed)
    model = EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=2, self_condition=True).double().eval()
    with torch.no_grad():  # as after training: the self-conditioning inputs no longer start at zero
        for prm in (model.sc_node.weight, model.sc_edge.weight, model.sc_vec):
            prm.copy_(0.3 * torch.randn_like(prm))
    return model


def previous_prediction(model, inputs):
    """A self-conditioning input as sampling makes it: the model's own prediction, detached."""
    with torch.no_grad():
        return EQGATDiffDenoiser.self_cond_from(model(*inputs))


def test_self_conditioned_denoiser_is_e3_and_permutation_equivariant(qm9_small):
    """The previous prediction enters as positions (rotated, reflected, translated and permuted with the
    input), node probabilities and edge probabilities; the outputs are equivariant / invariant as without."""
    model = self_cond_model()
    inputs = noisy_inputs(qm9_small)
    sc = previous_prediction(model, inputs)
    sc["pos"] = sc["pos"] + 0.2 * torch.randn(sc["pos"].shape, generator=torch.Generator().manual_seed(4),
                                              dtype=torch.float64)  # fmt: skip

    def run(pos, atoms, charges, bonds, t, batch, edge_index, sc_pos, sc_atoms, sc_charges, sc_bonds):
        out = model(
            pos,
            atoms,
            charges,
            bonds,
            t,
            batch,
            edge_index,
            self_cond={"pos": sc_pos, "atoms": sc_atoms, "charges": sc_charges, "bonds": sc_bonds},
        )
        return out["pos"], out["atoms"], out["charges"], out["bonds"]

    kinds_in = ["node_position", "node_scalar", "node_scalar", "invariant", "invariant", "node_index",
                "edge_index", "node_position", "node_scalar", "node_scalar", "invariant"]  # fmt: skip
    with torch.no_grad():
        args = [*inputs, sc["pos"], sc["atoms"], sc["charges"], sc["bonds"]]
        errs = assert_equivariant(
            run, args, kinds_in, ["node_vector", "node_scalar", "node_scalar", "invariant"]
        )
    assert max(errs.values()) < 1e-10
    with torch.no_grad():  # and the input matters: another previous prediction, other outputs
        a = model(*inputs, self_cond=sc)
        b = model(*inputs, self_cond={**sc, "pos": sc["pos"].flip(0)})
    for k in ("atoms", "charges", "bonds"):  # (an untrained model's position update is the identity)
        assert (a[k] - b[k]).abs().max() > 1e-3, k


def test_self_condition_starts_as_the_model_without_and_warm_starts_from_it(qm9_small):
    """Built or grown with ``self_condition``, the model computes exactly what the one without does, with or
    without a previous prediction (its inputs start at zero); the first gradient step moves them; a model
    without it rejects ``self_cond``; a self-conditioned source cannot go into a model without."""
    src = small_model()
    sc_model = (
        EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=3, self_condition=True).double().eval()
    )
    with torch.no_grad():  # whatever they held before, the added inputs start at zero
        for prm in (sc_model.sc_node.weight, sc_model.sc_edge.weight, sc_model.sc_vec):
            prm.fill_(0.5)
    assert sc_model.grow_from_(src) == {"new_layers": 1, "edge_copies": 1, "self_condition": True}
    inputs = noisy_inputs(qm9_small)
    sc = previous_prediction(src, inputs)
    with torch.no_grad():
        a, b, c = src(*inputs), sc_model(*inputs), sc_model(*inputs, self_cond=sc)
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    out = sc_model(*inputs, self_cond=sc)
    (out["bonds"].pow(2).sum() + out["pos"].pow(2).sum()).backward()
    for prm in (sc_model.sc_node.weight, sc_model.sc_edge.weight, sc_model.sc_vec):
        assert prm.grad.abs().max() > 0
    with pytest.raises(GeodiffValueError, match="without self_condition"):
        src(*inputs, self_cond=sc)
    with pytest.raises(GeodiffValueError, match="self_cond: expected shapes"):
        sc_model(*inputs, self_cond={**sc, "bonds": sc["bonds"][:-1]})
    with pytest.raises(GeodiffValueError, match="self-conditioning inputs, this model does not"):
        EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=8, num_layers=3).double().grow_from_(sc_model)


def test_self_conditioned_model_widens_its_edge_inputs(qm9_small):
    """Widening the edge channels of a self-conditioned model tiles the rows that write the edge stream
    from the previous prediction too: the same function up to rounding."""
    src = self_cond_model()
    inputs = noisy_inputs(qm9_small)
    sc = previous_prediction(src, inputs)
    wide = EQGATDiffDenoiser(s_dim=24, v_dim=8, e_dim=16, num_layers=2, self_condition=True).double().eval()
    assert wide.grow_from_(src)["edge_copies"] == 2
    with torch.no_grad():
        a, b = src(*inputs, self_cond=sc), wide(*inputs, self_cond=sc)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-11, msg=k)
