"""Adaptive batching by an atom or edge budget (as EQGAT-diff's and MiDi's adaptive loaders): molecules of
very different sizes (GEOM-Drugs: up to about 180 atoms with hydrogens) fill batches of about the same cost,
so the largest molecules do not run out of memory and the small ones do not waste the device.

On a fully connected graph a molecule of ``n`` atoms costs ``n`` nodes and ``n (n - 1)`` directed edges, so
``max_edges`` is the budget that tracks memory for EQGAT-diff; ``max_atoms`` is the simpler one.
"""

from __future__ import annotations

import numpy as np
import torch

from geodiff.errors import GeodiffError

__all__ = ["AtomBudgetBatchSampler"]


class AtomBudgetBatchSampler(torch.utils.data.Sampler):
    """Batches of dataset indices whose total atoms (``max_atoms``) and/or fully connected edges
    (``max_edges``) stay within budget. Each epoch (``set_epoch``) shuffles with ``seed + epoch`` and packs
    greedily in that order.

    Under ``torch.distributed`` every process builds the same global list of batches and takes every
    ``world_size``-th one, all processes the same number (the few left over are dropped), so no process
    waits for another at the end of an epoch; the trainer must then not add its own distributed sampler
    (``geodiff train`` sets ``use_distributed_sampler=False`` for such data modules).

    Args:
        num_atoms: ``[N]`` atoms of every item.
        max_atoms, max_edges: the budgets (at least one); a molecule over budget is an error.
        shuffle, seed: the order of items before packing (unshuffled: dataset order).
    """

    def __init__(self, num_atoms, max_atoms: int | None = None, max_edges: int | None = None,
                 shuffle: bool = True, seed: int = 0):  # fmt: skip
        self.num_atoms = np.asarray(num_atoms, dtype=np.int64)
        if max_atoms is None and max_edges is None:
            raise GeodiffError("batching: give data.max_atoms or data.max_edges")
        for name, v in (("max_atoms", max_atoms), ("max_edges", max_edges)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise GeodiffError(f"data.{name}: must be a positive integer, got {v!r}")
        self.max_atoms, self.max_edges = max_atoms, max_edges
        if len(self.num_atoms):
            n = int(self.num_atoms.max())
            if max_atoms is not None and n > max_atoms:
                raise GeodiffError(f"data.max_atoms: {max_atoms} is smaller than the largest molecule "
                                   f"({n} atoms)")  # fmt: skip
            if max_edges is not None and n * (n - 1) > max_edges:
                raise GeodiffError(f"data.max_edges: {max_edges} is smaller than the largest molecule's "
                                   f"{n * (n - 1)} edges ({n} atoms)")  # fmt: skip
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        order = np.arange(len(self.num_atoms))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        batches, current, atoms, edges = [], [], 0, 0
        for i in order.tolist():
            n = int(self.num_atoms[i])
            over_atoms = self.max_atoms is not None and atoms + n > self.max_atoms
            over_edges = self.max_edges is not None and edges + n * (n - 1) > self.max_edges
            if current and (over_atoms or over_edges):
                batches.append(current)
                current, atoms, edges = [], 0, 0
            current.append(i)
            atoms, edges = atoms + n, edges + n * (n - 1)
        if current:
            batches.append(current)
        return batches

    @staticmethod
    def _world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _mine(self) -> list[list[int]]:
        rank, world = self._world()
        batches = self._all_batches()
        if world == 1:
            return batches
        per = len(batches) // world
        return batches[rank : per * world : world]

    def __iter__(self):
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())
