"""Why generated molecules are unstable: each unstable molecule gets a kind of error.

* ``bond orders``: its bond graph is right, only the orders are not: some assignment of single, double and
  triple orders to the same bonds makes every atom's valence allowed (e.g. a double bond one position off);
* ``too few bonds`` / ``too many bonds``: no assignment on this graph works, and every unstable atom has a
  bond-order sum below / above what its element and charge allow (a missing or extra hydrogen or bond);
* ``both``: no assignment works and there are atoms of both sorts.

``geometry_stable`` says whether the 3D coordinates alone would have given a stable molecule: the bond
graph that RDKit perceives from them (``rdDetermineBonds`` with the molecule's elements and total charge)
admits valid orders. Where it does and the generated bonds do not, the generator's bonds disagree with its
own geometry; where neither does, the structure itself is off.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np

from geodiff.data.structures import Molecule3D
from geodiff.errors import GeodiffError
from geodiff.metrics.chemistry import allowed_valences, bond_order_sums, stability

__all__ = ["KINDS", "orders_exist", "diagnose_unstable"]

KINDS = ("bond orders", "too few bonds", "too many bonds", "both")


def _allowed(m: Molecule3D, table: str) -> list[tuple[int, ...]]:
    rows = allowed_valences(m.atomic_numbers, m.charges, table)
    return [tuple(int(v) for v in row if not np.isnan(v)) for row in rows]


def orders_exist(m: Molecule3D, table: str = "strict") -> bool:
    """Whether the bonds of ``m`` (the graph; their orders are ignored) can be given orders 1-3 so that every
    atom's bond-order sum is a valence its element and charge allow. A small exact search (molecules of
    tens of atoms)."""
    n = m.num_atoms
    bonds = m.bonds if m.bonds is not None else np.zeros((0, 3), np.int64)
    bonds = bonds[bonds[:, 2] > 0]
    degree = np.bincount(bonds[:, :2].reshape(-1), minlength=n) if len(bonds) else np.zeros(n, np.int64)
    options = _allowed(m, table)
    if any(not opts for opts in options):
        return False
    for targets in itertools.product(*options):  # one valence per atom (QM9: a single choice each)
        need = [t - int(d) for t, d in zip(targets, degree, strict=True)]  # above single bonds
        if min(need, default=0) < 0:
            continue
        edges = [(int(i), int(j)) for i, j, _ in bonds if need[i] > 0 and need[j] > 0]
        if _raise_orders(edges, 0, need):
            return True
    return False


def _raise_orders(edges: list[tuple[int, int]], k: int, need: list[int]) -> bool:
    """Depth-first: raise bond ``k`` by 2, 1 or 0 orders until every atom's ``need`` is zero."""
    if k == len(edges):
        return not any(need)
    i, j = edges[k]
    for extra in (2, 1, 0):
        if need[i] >= extra and need[j] >= extra:
            need[i] -= extra
            need[j] -= extra
            # an atom whose last candidate bond this was must be satisfied now
            done = all(need[a] == 0 for a in (i, j) if all(a not in e for e in edges[k + 1 :]))
            if done and _raise_orders(edges, k + 1, need):
                return True
            need[i] += extra
            need[j] += extra
    return False


def _kind(m: Molecule3D, table: str) -> str:
    if orders_exist(m, table):
        return "bond orders"
    bonds = m.bonds if m.bonds is not None else np.zeros((0, 3), np.int64)
    valence = bond_order_sums(bonds, m.num_atoms)
    low = high = False
    for v, opts in zip(valence, _allowed(m, table), strict=True):
        if opts and any(abs(v - o) < 1e-6 for o in opts):
            continue
        low |= not opts or v < min(opts)
        high |= bool(opts) and v > max(opts)
    return "both" if low and high else ("too few bonds" if low else "too many bonds")


def _geometry_stable(m: Molecule3D, table: str) -> bool:
    from geodiff.metrics.bonds import rdkit_bonds

    try:
        perceived = rdkit_bonds(m)
    except GeodiffError:
        return False
    return orders_exist(m.with_bonds(perceived), table)


def diagnose_unstable(mols: Sequence[Molecule3D], table: str = "strict", geometry: bool = True) -> dict:
    """The kind of error of every unstable molecule (``molecules``: index, name, kind, geometry_stable) and
    counts (``kinds``; ``geometry_stable``: how many of the unstable ones RDKit's bonds from 3D would make
    stable, ``None`` without ``geometry``)."""
    stable = stability(list(mols), table=table)["stable"]
    rows = []
    for idx in np.flatnonzero(~stable).tolist():
        m = mols[idx]
        rows.append({"index": idx, "name": m.name, "kind": _kind(m, table),
                     "geometry_stable": _geometry_stable(m, table) if geometry else None})  # fmt: skip
    kinds = Counter(r["kind"] for r in rows)
    return {
        "num_molecules": len(mols),
        "num_unstable": len(rows),
        "kinds": {k: kinds.get(k, 0) for k in KINDS},
        "geometry_stable": sum(bool(r["geometry_stable"]) for r in rows) if geometry else None,
        "molecules": rows,
    }
