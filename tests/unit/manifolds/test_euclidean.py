"""Zero-CoM projections for node-flattened and padded batches."""

import pytest
import torch

from geodiff.manifolds import euclidean


def test_remove_mean_per_graph_and_idempotent():
    batch = torch.tensor([0, 0, 1, 1, 1, 3])  # graph 2 is empty
    x = torch.randn(6, 3, dtype=torch.float64) + 10
    y = euclidean.remove_mean(x, batch)
    com = euclidean.center_of_mass(y, batch, num_graphs=4)
    assert com.abs().max() < 1e-12
    torch.testing.assert_close(euclidean.remove_mean(y, batch), y)
    torch.testing.assert_close(y[5], torch.zeros(3, dtype=torch.float64))  # a single node sits at its CoM
    # graph 0 moved by exactly its own mean
    torch.testing.assert_close(y[:2], x[:2] - x[:2].mean(0))


def test_masked_matches_flattened():
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    y = euclidean.remove_mean_masked(x, mask)
    batch = torch.arange(3).repeat_interleave(mask.sum(1))
    torch.testing.assert_close(y[mask], euclidean.remove_mean(x[mask], batch))
    assert y[~mask].abs().max() == 0


def test_zero_com_gaussian_has_right_variance():
    n_graphs, n = 20000, 4
    batch = torch.arange(n_graphs).repeat_interleave(n)
    eps = euclidean.sample_zero_com_gaussian(
        (n_graphs * n, 3), batch, torch.Generator().manual_seed(0), torch.float64
    )
    assert euclidean.center_of_mass(eps, batch).abs().max() < 1e-12
    assert abs(float(eps.var()) - (n - 1) / n) < 0.02
    m = euclidean.sample_zero_com_gaussian_masked(torch.ones(5, 3, dtype=torch.bool), dtype=torch.float64)
    assert m.mean(1).abs().max() < 1e-12


def test_rotation_commutes_with_projection():
    batch = torch.tensor([0, 0, 0, 1, 1])
    x = torch.randn(5, 3, dtype=torch.float64)
    from geodiff.manifolds import so3

    R = so3.random_rotation((), dtype=torch.float64)
    torch.testing.assert_close(euclidean.remove_mean(x @ R.T, batch), euclidean.remove_mean(x, batch) @ R.T)


def test_bad_batch_vector():
    with pytest.raises(ValueError, match="batch"):
        euclidean.remove_mean(torch.zeros(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch"):
        euclidean.remove_mean(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="x: expected shape"):
        euclidean.remove_mean(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mask"):
        euclidean.remove_mean_masked(torch.zeros(2, 4, 3), torch.ones(2, 3))
