"""Adaptive batching by atom / edge budget: every batch within budget, every item once per epoch, a new order
each epoch, equal batch counts across processes, and a one-line error for a budget below the largest
molecule."""

import numpy as np
import pytest

from geodiff.data.batching import AtomBudgetBatchSampler
from geodiff.errors import GeodiffError

SIZES = np.random.default_rng(0).integers(3, 60, size=500)


@pytest.mark.parametrize(("max_atoms", "max_edges"), [(300, None), (None, 20000), (400, 15000)])
def test_batches_stay_within_budget_and_cover_every_item_once(max_atoms, max_edges):
    s = AtomBudgetBatchSampler(SIZES, max_atoms=max_atoms, max_edges=max_edges, seed=1)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(SIZES))) and len(s) == len(batches)
    for b in batches:
        n = SIZES[b]
        assert max_atoms is None or n.sum() <= max_atoms
        assert max_edges is None or (n * (n - 1)).sum() <= max_edges
    # batches are full: on average the binding budget is more than 80 % used
    atoms, edges = max_atoms or np.inf, max_edges or np.inf
    fill = [max(SIZES[b].sum() / atoms, (SIZES[b] * (SIZES[b] - 1)).sum() / edges) for b in batches]
    assert np.mean(fill) > 0.8


def test_epochs_reshuffle_reproducibly():
    s = AtomBudgetBatchSampler(SIZES, max_atoms=300, seed=2)
    first = list(s)
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    assert list(AtomBudgetBatchSampler(SIZES, max_atoms=300, shuffle=False))[0][0] == 0


def test_processes_take_equal_shares_of_one_global_list(monkeypatch):
    s = AtomBudgetBatchSampler(SIZES, max_atoms=300, seed=3)
    everything = s._all_batches()
    shares = []
    for rank in range(3):
        monkeypatch.setattr(AtomBudgetBatchSampler, "_world", staticmethod(lambda r=rank: (r, 3)))
        shares.append(list(s))
    assert len({len(x) for x in shares}) == 1 and len(shares[0]) == len(everything) // 3
    flat = [tuple(b) for x in shares for b in x]
    assert len(set(flat)) == len(flat) and set(flat) <= {tuple(b) for b in everything}


def test_budget_below_the_largest_molecule_is_one_line():
    with pytest.raises(
        GeodiffError, match=r"max_atoms: 50 is smaller than the largest molecule \(59 atoms\)"
    ):
        AtomBudgetBatchSampler(SIZES, max_atoms=50)
    with pytest.raises(GeodiffError, match="max_edges"):
        AtomBudgetBatchSampler(SIZES, max_edges=100)
    with pytest.raises(GeodiffError, match="give data.max_atoms or data.max_edges"):
        AtomBudgetBatchSampler(SIZES)
