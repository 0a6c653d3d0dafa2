"""Bonds from 3D coordinates.

``edm``: the bond-length lookup of EDM (Hoogeboom et al., 2022) and its successors (GeoLDM, ...). With the
reference single / double / triple lengths ``l1, l2, l3`` of an element pair (pm) and margins 10 / 5 / 3 pm:
no bond unless ``d < l1 + 10``; then single, upgraded to double if the pair has a double length and
``d < l2 + 5``, upgraded to triple if it also has a triple length and ``d < l3 + 3``. Pairs without a
single length never bond. The published table is not symmetric for two pairs (C=S and Cl-Br appear under one
element only), which makes the result depend on atom order; here every length applies to both orders, so the
result is permutation invariant. On H, C, N, O, F (QM9) the two are identical.

Vectorised over all atom pairs of all molecules at once (numpy), in chunks of molecules.

``rdkit``: :func:`rdkit.Chem.rdDetermineBonds.DetermineBonds` with the molecule's total formal charge
(connectivity from covalent radii, then bond orders by Hueckel-like assignment).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rdkit import RDLogger

from geodiff.data.structures import Molecule3D, atomic_number, from_rdkit, to_rdkit
from geodiff.errors import GeodiffError
from geodiff.io import progress

__all__ = ["EDM_MARGINS_PM", "edm_length_tables", "edm_bonds", "rdkit_bonds", "perceive"]

EDM_MARGINS_PM = (10.0, 5.0, 3.0)

# Reference bond lengths in pm (the tables EDM took from wiredchemist.com and chemistry-reference.com),
# one row per unordered element pair.
_SINGLE = """
H H 74; H C 109; H N 101; H O 96; H F 92; H B 119; H Si 148; H P 144; H As 152; H S 134; H Cl 127;
H Br 141; H I 161; C C 154; C N 147; C O 143; C F 135; C Si 185; C P 184; C S 182; C Cl 177; C Br 194;
C I 214; N N 145; N O 140; N F 136; N Cl 175; N Br 214; N S 168; N I 222; N P 177; O O 148; O F 142;
O Br 172; O S 151; O P 163; O Si 163; O Cl 164; O I 194; F F 142; F S 158; F Si 160; F Cl 166; F Br 178;
F P 156; F I 187; B Cl 175; Si Si 233; Si S 200; Si Cl 202; Si Br 215; Si I 243; Cl Cl 199; Cl I 232;
Cl P 203; Cl S 207; Cl Br 214; S S 204; S Br 225; S P 210; S I 234; Br Br 228; Br P 222; P P 221; I I 266
"""
_DOUBLE = "C C 134; C N 129; C O 120; C S 160; N N 125; N O 121; O O 121; O P 150; P S 186"
_TRIPLE = "C C 120; C N 116; C O 113; N N 110"


def _parse(table: str) -> list[tuple[int, int, float]]:
    rows = []
    for item in table.replace("\n", " ").split(";"):
        if item.strip():
            a, b, length = item.split()
            rows.append((atomic_number(a), atomic_number(b), float(length)))
    return rows


_TABLES: np.ndarray | None = None


def edm_length_tables() -> np.ndarray:
    """``[3, 119, 119]`` single / double / triple reference lengths in pm by atomic numbers; NaN = none."""
    global _TABLES
    if _TABLES is None:
        t = np.full((3, 119, 119), np.nan)
        for k, table in enumerate((_SINGLE, _DOUBLE, _TRIPLE)):
            for a, b, length in _parse(table):
                t[k, a, b] = t[k, b, a] = length
        _TABLES = t
    return _TABLES


def _pairs(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global indices ``(i, j)``, ``i < j``, of every atom pair inside each molecule (sizes concatenated)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    iu = {}
    ii, jj = [], []
    for n in np.unique(sizes):
        iu[int(n)] = np.triu_indices(int(n), 1)
    for n, off in zip(sizes.tolist(), offsets.tolist(), strict=True):
        a, b = iu[n]
        ii.append(a + off)
        jj.append(b + off)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def edm_bonds(mols: Sequence[Molecule3D], chunk_atoms: int = 2_000_000) -> list[np.ndarray]:
    """EDM lookup-table bonds ``[M, 3]`` (i, j, order) for every molecule; orders are 1, 2 or 3."""
    tables = edm_length_tables()
    m1, m2, m3 = EDM_MARGINS_PM
    out: list[np.ndarray] = []
    start = 0
    while start < len(mols):
        # a chunk of molecules whose pair count stays bounded
        stop, pairs = start, 0
        while stop < len(mols) and (pairs == 0 or pairs + mols[stop].num_atoms ** 2 // 2 <= chunk_atoms):
            pairs += mols[stop].num_atoms ** 2 // 2
            stop += 1
        chunk = mols[start:stop]
        sizes = np.array([m.num_atoms for m in chunk], dtype=np.int64)
        z = np.concatenate([m.atomic_numbers for m in chunk]) if len(chunk) else np.zeros(0, np.int64)
        pos = np.concatenate([m.pos for m in chunk]) if len(chunk) else np.zeros((0, 3))
        i, j = _pairs(sizes)
        d = 100.0 * np.sqrt(((pos[i] - pos[j]) ** 2).sum(-1))  # pm
        zi, zj = z[i], z[j]
        with np.errstate(invalid="ignore"):
            single = d < tables[0, zi, zj] + m1  # NaN compares False: no reference length, no bond
            double = single & (d < tables[1, zi, zj] + m2)
            triple = double & (d < tables[2, zi, zj] + m3)
        order = single.astype(np.int64) + double + triple
        keep = order > 0
        mol_of_pair = np.repeat(np.arange(len(chunk)), sizes * (sizes - 1) // 2)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rows = np.stack([i - offsets[mol_of_pair], j - offsets[mol_of_pair], order], axis=1)[keep]
        split = np.searchsorted(mol_of_pair[keep], np.arange(1, len(chunk)))
        out.extend(np.split(rows, split))
        start = stop
    return out


def rdkit_bonds(m: Molecule3D) -> np.ndarray:
    """Bonds by RDKit's rdDetermineBonds at the molecule's total formal charge; raises GeodiffError."""
    from rdkit.Chem import rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    mol = to_rdkit(m.with_bonds(np.zeros((0, 3), np.int64)))
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=int(m.charges.sum()))
    except Exception as exc:
        raise GeodiffError(f"{m.name or 'molecule'}: RDKit bond perception failed ({exc})") from None
    bonds = from_rdkit(mol, m.name).bonds
    return np.zeros((0, 3), np.int64) if bonds is None else bonds


def perceive(mols: Sequence[Molecule3D], method: str) -> tuple[list[Molecule3D], list[tuple[str, str]]]:
    """The molecules with bonds from ``method`` (``edm``, ``rdkit`` or ``generated`` = as given).

    ``rdkit`` can fail on a molecule; such molecules keep no bonds (so they count as unstable and invalid)
    and are listed with the reason. ``generated`` on a molecule without bonds is an error.
    """
    if method == "edm":
        return [m.with_bonds(b) for m, b in zip(mols, edm_bonds(mols), strict=True)], []
    if method == "rdkit":
        out, failures = [], []
        for m in progress(mols, desc="perceiving bonds (RDKit)", unit="mol"):
            try:
                out.append(m.with_bonds(rdkit_bonds(m)))
            except GeodiffError as exc:
                failures.append((m.name, str(exc)))
                out.append(m.with_bonds(np.zeros((0, 3), np.int64)))
        return out, failures
    if method == "generated":
        missing = [m.name for m in mols if m.bonds is None]
        if missing:
            raise GeodiffError(f"bonds=generated, but {len(missing)} molecule(s) have no bonds "
                               f"(first: {missing[0]!r}); use bonds=edm or bonds=rdkit")  # fmt: skip
        return list(mols), []
    raise GeodiffError(f"bonds: unknown method {method!r} (edm, rdkit or generated)")
