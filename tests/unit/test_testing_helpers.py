"""geodiff.testing.assert_equivariant accepts equivariant functions and names what breaks otherwise."""

import pytest
import torch

from geodiff.manifolds import euclidean
from geodiff.testing import assert_equivariant

X = torch.randn(6, 3, dtype=torch.float64)
H = torch.randn(6, 4, dtype=torch.float64)
BATCH = torch.tensor([0, 0, 0, 1, 1, 1])
EDGES = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 0, 4, 5]])


def test_accepts_an_egnn_like_update():
    def layer(h, x, batch, edge_index):
        src, dst = edge_index
        d = x[src] - x[dst]
        w = torch.tanh((d * d).sum(-1, keepdim=True) + h[src, :1])
        dx = torch.zeros_like(x).index_add_(0, dst, w * d)
        dh = torch.zeros_like(h).index_add_(0, dst, w.expand(-1, h.shape[1]))
        return h + dh, x + dx, euclidean.remove_mean(x, batch)

    errs = assert_equivariant(
        layer,
        [H, X, BATCH, EDGES],
        ["node_scalar", "node_position", "node_index", "edge_index"],
        ["node_scalar", "node_position", "node_vector"],
    )
    assert set(errs) == {"rotation", "reflection", "translation", "permutation", "combined"}
    assert max(errs.values()) < 1e-12


def test_rejects_a_fixed_direction():
    with pytest.raises(AssertionError, match="rotation"):
        assert_equivariant(
            lambda x: x + torch.tensor([1.0, 0, 0], dtype=x.dtype),
            [X],
            ["node_position"],
            "node_position",
            translations=False,
            permutations=False,
        )


def test_rejects_order_dependence():
    with pytest.raises(AssertionError, match="permutation"):
        assert_equivariant(
            lambda x: x - x[0],
            [X],
            ["node_position"],
            "node_vector",
            rotations=False,
            reflections=False,
            translations=False,
        )


def test_cross_product_is_a_pseudovector_not_a_vector():
    a, b = torch.randn(2, 6, 3, dtype=torch.float64)

    def cross(u, v):
        return torch.linalg.cross(u, v)

    assert_equivariant(cross, [a, b], ["node_vector", "node_vector"], "node_pseudovector")
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(cross, [a, b], ["node_vector", "node_vector"], "node_vector")


def test_dict_outputs_and_poses():
    def f(x):
        return {"centre": x.mean(0), "spread": (x - x.mean(0)).norm(dim=-1)}

    assert_equivariant(f, [X], ["node_position"], {"centre": "position", "spread": "node_scalar"})
    from geodiff.manifolds import se3

    pose, offset = se3.random_pose((2,), dtype=torch.float64)
    # a body-frame offset (right multiplication) commutes with a change of world frame (left action)
    assert_equivariant(lambda p: p @ offset, [pose], ["pose"], "pose", reflections=False)
    with pytest.raises(AssertionError, match="rotation"):
        assert_equivariant(lambda p: offset @ p, [pose], ["pose"], "pose", reflections=False)
