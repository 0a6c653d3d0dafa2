"""EQGAT layer and scatter ops: float64 equivariance and exact values."""

import torch

from geodiff.data.molecules import fully_connected_edges
from geodiff.manifolds import euclidean
from geodiff.nn.eqgat import EQGATLayer
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
