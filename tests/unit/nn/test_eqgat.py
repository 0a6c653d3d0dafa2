"""EQGAT layer and scatter ops: float64 equivariance and exact values."""

import torch

from geodiff.data.molecules import fully_connected_edges
from geodiff.manifolds import euclidean
from geodiff.nn.eqgat import EQGATLayer, pair_linear
from geodiff.nn.scatter import scatter_mean, scatter_softmax, scatter_sum
from geodiff.testing import assert_equivariant


def test_scatter_ops():
    src = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, -1.0]], dtype=torch.float64)
    idx = torch.tensor([0, 0, 2])
    torch.testing.assert_close(
        scatter_sum(src, idx, 3), torch.tensor([[4.0, 2.0], [0, 0], [5.0, -1.0]]).double()
    )
    torch.testing.assert_close(scatter_mean(src, idx, 3)[0], torch.tensor([2.0, 1.0]).double())
    sm = scatter_softmax(src, idx, 3)
    torch.testing.assert_close(sm[:2, 0], torch.softmax(torch.tensor([1.0, 3.0]).double(), 0))
    torch.testing.assert_close(sm[2], torch.ones(2, dtype=torch.float64))
    big = scatter_softmax(torch.tensor([[1000.0], [1001.0]]), torch.tensor([0, 0]), 1)
    assert torch.isfinite(big).all() and abs(float(big.sum()) - 1) < 1e-6


def test_eqgat_layer_is_e3_and_permutation_equivariant():
    torch.manual_seed(0)
    layer = EQGATLayer(16, 8, 6).double()
    sizes = torch.tensor([4, 5, 3])
    edge_index, _ = fully_connected_edges(sizes)
    batch = torch.repeat_interleave(torch.arange(3), sizes)
    n = int(sizes.sum())
    s = torch.randn(n, 16, dtype=torch.float64)
    v = torch.randn(n, 8, 3, dtype=torch.float64)  # channels first so coordinates are the last axis
    p = euclidean.remove_mean(torch.randn(n, 3, dtype=torch.float64), batch)
    e = torch.randn(edge_index.shape[1], 6, dtype=torch.float64)

    def run(s, v, p, e, ei):
        so, vo, po, eo = layer(s, v.transpose(1, 2), p, e, ei)
        return so, vo.transpose(1, 2), po, eo

    errs = assert_equivariant(
        run,
        [s, v, p, e, edge_index],
        ["node_scalar", "node_vector", "node_vector", "invariant", "edge_index"],
        ["node_scalar", "node_vector", "node_vector", "invariant"],
        translations=False,  # the layer sees zero-CoM positions; the denoiser centres them
    )
    assert max(errs.values()) < 1e-12


def test_pair_linear_equals_the_linear_layer_on_the_concatenation():
    torch.manual_seed(1)
    sizes = torch.tensor([3, 4])
    edge_index, _ = fully_connected_edges(sizes)
    j, i = edge_index
    n, m = int(sizes.sum()), edge_index.shape[1]
    x = torch.randn(n, 5, dtype=torch.float64)
    a, b = torch.randn(m, 2, dtype=torch.float64), torch.randn(m, 3, dtype=torch.float64)
    pair = torch.nn.Linear(2 + 10 + 3, 7).double()
    torch.testing.assert_close(pair_linear(pair, x, edge_index, before=(a,), after=(b,)),
                               pair(torch.cat([a, x[i], x[j], b], -1)), rtol=1e-13, atol=1e-13)  # fmt: skip
    summed = torch.nn.Linear(2 + 5, 7, bias=False).double()
    torch.testing.assert_close(pair_linear(summed, x, edge_index, after=(a,), symmetric=True),
                               summed(torch.cat([x[i] + x[j], a], -1)), rtol=1e-13, atol=1e-13)  # fmt: skip
    only_nodes = torch.nn.Linear(10, 7).double()
    expected = only_nodes(torch.cat([x[i], x[j]], -1))
    torch.testing.assert_close(pair_linear(only_nodes, x, edge_index), expected, rtol=1e-13, atol=1e-13)


def test_layers_handing_on_their_geometry_match_layers_that_recompute_it():
    torch.manual_seed(2)
    layers = [EQGATLayer(16, 8, 6, rbf_dim=8).double() for _ in range(3)]
    for layer in layers:  # non-zero position gates, so positions move and the geometry changes
        torch.nn.init.normal_(layer.edge_mlp[-1].weight, std=0.1)
    sizes = torch.tensor([4, 5])
    edge_index, _ = fully_connected_edges(sizes)
    batch = torch.repeat_interleave(torch.arange(2), sizes)
    n = int(sizes.sum())
    state = (torch.randn(n, 16, dtype=torch.float64), torch.zeros(n, 3, 8, dtype=torch.float64),
             euclidean.remove_mean(torch.randn(n, 3, dtype=torch.float64), batch),
             torch.randn(edge_index.shape[1], 6, dtype=torch.float64))  # fmt: skip
    plain, chained, geom = state, state, None
    for layer in layers:
        plain = layer(*plain, edge_index)
        *chained, geom = layer.forward_with_geometry(*chained, edge_index, geom)
    assert not torch.allclose(plain[2], state[2])
    for a, b in zip(plain, chained, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_identity_layer_returns_its_input_exactly_and_still_learns():
    """``make_identity_`` (a layer added on top of a trained stack): the output is the input, bit for bit,
    in both position-update forms, and every zeroed projection gets a gradient."""
    sizes = torch.tensor([4, 3])
    edge_index, _ = fully_connected_edges(sizes)
    batch = torch.repeat_interleave(torch.arange(2), sizes)
    n = int(sizes.sum())
    for mode in ("scaled", "unit"):
        torch.manual_seed(2)
        layer = EQGATLayer(16, 8, 6, rbf_dim=8, position_update=mode).double().make_identity_()
        s = torch.randn(n, 16, dtype=torch.float64)
        v = torch.randn(n, 3, 8, dtype=torch.float64)
        p = euclidean.remove_mean(torch.randn(n, 3, dtype=torch.float64), batch)
        e = torch.randn(edge_index.shape[1], 6, dtype=torch.float64)
        out = layer(s, v, p, e, edge_index)
        for a, b in zip(out, (s, v, p, e), strict=True):
            assert torch.equal(a, b)
        sum(o.pow(3).sum() for o in out).backward()
        zeroed = [layer.w_s.weight, layer.gated.mlp[-1].weight, layer.edge_update[-1].weight]
        for w in zeroed:
            assert w.grad is not None and float(w.grad.abs().max()) > 0
        gates = layer.edge_mlp[-1].weight.grad[16:]  # direction, vector and position gates
        assert float(gates.abs().max()) > 0
