"""A straightforward reference implementation of the EDM-style molecule metrics: Python loops over atom
pairs, one molecule at a time, as the original evaluation scripts do it.

It exists to check :mod:`geodiff.metrics` (same definitions, same numbers) and as the baseline of
``eval/bench_chemistry.py``; use :func:`geodiff.metrics.chemistry.molecule_metrics` for real work.
"""

from __future__ import annotations

import math

from rdkit import Chem, RDLogger

from geodiff.data.structures import Molecule3D, element_symbol
from geodiff.metrics.bonds import _DOUBLE, _SINGLE, _TRIPLE, EDM_MARGINS_PM
from geodiff.metrics.chemistry import ALLOWED_VALENCES, EDM_VALENCES

__all__ = ["loop_bond_order", "loop_metrics"]


def _table(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for item in text.replace("\n", " ").split(";"):
        if item.strip():
            a, b, length = item.split()
            out.setdefault(a, {})[b] = float(length)
            out.setdefault(b, {})[a] = float(length)
    return out


BONDS1, BONDS2, BONDS3 = _table(_SINGLE), _table(_DOUBLE), _table(_TRIPLE)


def loop_bond_order(a: str, b: str, distance: float) -> int:
    """EDM's rule for one pair (``distance`` in Angstrom)."""
    d = 100.0 * distance
    m1, m2, m3 = EDM_MARGINS_PM
    if a not in BONDS1 or b not in BONDS1[a] or d >= BONDS1[a][b] + m1:
        return 0
    if a in BONDS2 and b in BONDS2[a] and d < BONDS2[a][b] + m2:
        if a in BONDS3 and b in BONDS3[a] and d < BONDS3[a][b] + m3:
            return 3
        return 2
    return 1


def loop_metrics(mols: list[Molecule3D], table: str = "charged") -> dict:
    """EDM bonds, stability, validity, uniqueness: a loop over molecules, and over atom pairs in each."""
    RDLogger.DisableLog("rdApp.*")
    stable_atoms = total_atoms = stable_mols = valid = 0
    smiles = []
    for m in mols:
        symbols = [element_symbol(z) for z in m.atomic_numbers.tolist()]
        pos = m.pos.tolist()
        n = len(symbols)
        valence = [0] * n
        bonds = []
        for i in range(n):
            for j in range(i + 1, n):
                dist = math.sqrt(sum((pos[i][k] - pos[j][k]) ** 2 for k in range(3)))
                order = loop_bond_order(symbols[i], symbols[j], dist)
                if order:
                    valence[i] += order
                    valence[j] += order
                    bonds.append((i, j, order))
        ok_atoms = 0
        for i in range(n):
            q = int(m.charges[i])
            allowed = (EDM_VALENCES.get(symbols[i], ()) if table == "edm"
                       else ALLOWED_VALENCES.get(symbols[i], {}).get(q, ()))  # fmt: skip
            ok_atoms += valence[i] in allowed
        stable_atoms += ok_atoms
        total_atoms += n
        stable_mols += ok_atoms == n
        rw = Chem.RWMol()
        for i in range(n):
            atom = Chem.Atom(symbols[i])
            atom.SetFormalCharge(int(m.charges[i]))
            rw.AddAtom(atom)
        kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
        for i, j, order in bonds:
            rw.AddBond(i, j, kinds[order])
        try:
            mol = rw.GetMol()
            Chem.SanitizeMol(mol)
        except Exception:
            continue
        valid += 1
        largest = max(Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False), key=lambda f: f.GetNumAtoms())
        smiles.append(Chem.MolToSmiles(Chem.RemoveHs(largest, sanitize=False)))
    return {
        "atom_stability": stable_atoms / max(total_atoms, 1),
        "mol_stability": stable_mols / max(len(mols), 1),
        "validity": valid / max(len(mols), 1),
        "uniqueness": len(set(smiles)) / len(smiles) if smiles else 0.0,
    }
