"""Chemistry metrics of generated 3D molecules, computed the way the papers compute them.

Bonds come from the model (``generated``, EQGAT-diff / MiDi), from 3D by EDM's lookup table (``edm``,
for comparison with EDM / GeoLDM) or by RDKit (``rdkit``): :mod:`geodiff.metrics.bonds`.

* **atom / molecule stability**: an atom is stable when the sum of its bond orders is a valence its
  element allows; a molecule when all its atoms are. Named conventions (``valence_table=``), each as its
  reference computes it: ``strict`` (geodiff's, formerly ``charged``: one valence per element and charge,
  e.g. neutral C 4, N+ 4, aromatic bonds 1.5), ``eqgat`` and ``midi`` (EQGAT-diff's and MiDi's
  ``check_stability``: their shared table, e.g. neutral C 3 or 4, N 2 or 3, N+ 2, 3 or 4; a charge the table
  lacks is judged as neutral; aromatic bonds count 1, as their code runs), ``edm`` (EDM's, by element
  only). Vectorised over all atoms of all molecules.
* **validity**: RDKit sanitisation of the molecule as given succeeds (EDM then keeps the largest fragment).
  As in EDM, MiDi and EQGAT-diff, RDKit may fill open valences with implicit hydrogens, so validity does not
  penalise under-bonded atoms (radicals); stability does;
  **connected validity**: valid and one fragment (EQGAT-diff's ``BasicMolecularMetrics.compute_validity``,
  ``experiments/sampling/analyze.py``, which its paper reports as validity; MiDi's); **validity without
  implicit H** (``validity_no_implicit_h``): connected, sanitises, and RDKit added no implicit hydrogen to any
  atom (EQGAT-diff's ``Molecule.compute_validity``, ``experiments/molecule_utils.py``, used when its
  molecules are built with ``check_validity=True``: an all-hydrogen model must place every H itself);
  **connected**: the bond graph is one component (whether or not it sanitises).
* **uniqueness**: distinct canonical SMILES (largest fragment) / valid molecules; **novelty**: unique valid
  SMILES absent from a reference set / unique valid SMILES.
* **distributions** against reference molecules: total variation of atom types, atom counts and bond types;
  Wasserstein-1 of bond lengths per bond type and of bond angles per central element.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, RDLogger

from geodiff.data.structures import Molecule3D, element_symbol, rdkit_unsafe, to_rdkit
from geodiff.io import progress

__all__ = [
    "ALLOWED_VALENCES",
    "EDM_VALENCES",
    "stability",
    "rdkit_validity",
    "connected_fraction",
    "uniqueness_novelty",
    "distribution_metrics",
    "molecule_metrics",
    "canonical_smiles",
]

#: ``strict`` (formerly ``charged``): valences allowed per element and formal charge, one or two per entry
ALLOWED_VALENCES: dict[str, dict[int, tuple[int, ...]]] = {
    "H": {0: (1,)},
    "B": {0: (3,)},
    "C": {0: (4,), 1: (3,), -1: (3,)},
    "N": {0: (3,), 1: (4,), -1: (2,)},
    "O": {0: (2,), 1: (3,), -1: (1,)},
    "F": {0: (1,)},
    "Si": {0: (4,)},
    "P": {0: (3, 5), 1: (4,)},
    "S": {0: (2, 6), 1: (3,), -1: (1,)},
    "Cl": {0: (1,)},
    "Br": {0: (1,)},
    "I": {0: (1,)},
}
#: EDM's valence table (by element only; formal charges are ignored)
EDM_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,), "P": (3, 5),
    "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5),
}  # fmt: skip
#: ``eqgat``: EQGAT-diff's ``allowed_bonds`` (tuanle618/eqgat-diff, eqgat_diff/experiments/sampling/
#: utils.py, the dict above ``check_stability``), the same table as MiDi's: an int, a list, or by formal
#: charge (a charge the dict lacks falls back to its 0 entry; an int or list applies to every charge)
EQGAT_VALENCES: dict[str, object] = {
    "H": {0: 1, 1: 0, -1: 0},
    "C": {0: [3, 4], 1: 3, -1: 3},
    "N": {0: [2, 3], 1: [2, 3, 4], -1: 2},
    "O": {0: 2, 1: 3, -1: 1},
    "F": {0: 1, -1: 0},
    "B": 3, "Al": 3, "Si": 4,
    "P": {0: [3, 5], 1: 4},
    "S": {0: [2, 6], 1: [2, 3], 2: 4, 3: 5, -1: 3},
    "Cl": 1, "As": 3,
    "Br": {0: 1, 1: 2},
    "I": 1, "Hg": [1, 2], "Bi": [3, 5], "Se": [2, 4, 6],
}  # fmt: skip
#: the named stability conventions (``valence_table=``); ``charged`` is the old name of ``strict``
VALENCE_TABLES = ("strict", "eqgat", "midi", "edm")
BOND_ORDER = np.array([0.0, 1.0, 2.0, 3.0, 1.5])  # by bond type code; aromatic = 1.5
#: EQGAT-diff / MiDi as their code runs: ``edge_types[edge_types == 4] = 1.5`` writes into an int64 tensor,
#: so an aromatic bond counts 1; the valence is the integer sum
BOND_ORDER_INT = np.array([0.0, 1.0, 2.0, 3.0, 1.0])
BOND_NAMES = {1: "single", 2: "double", 3: "triple", 4: "aromatic"}
_CHARGE_OFFSET, _CHARGE_SPAN = 8, 17  # charges -8..8


def valence_table(name: str) -> str:
    """The canonical name of a stability convention, or ``GeodiffError`` listing them."""
    from geodiff.errors import GeodiffError

    name = {"charged": "strict"}.get(name, name)
    if name not in VALENCE_TABLES:
        raise GeodiffError(f"valence_table: {name!r} is not one of {', '.join(VALENCE_TABLES)}")
    return name


@functools.lru_cache(maxsize=8)
def _valence_lookup(table: str) -> np.ndarray:
    """``[119 * 17, 3]`` allowed valences by ``z * 17 + charge + 8``; NaN = not allowed."""
    from geodiff.data.structures import atomic_number

    table = valence_table(table)
    lut = np.full((119 * _CHARGE_SPAN, 3), np.nan)
    if table in ("eqgat", "midi"):
        for sym, entry in EQGAT_VALENCES.items():
            z = atomic_number(sym)
            rows = slice(z * _CHARGE_SPAN, (z + 1) * _CHARGE_SPAN)
            by_charge = entry if isinstance(entry, dict) else {0: entry}
            fallback = by_charge[0] if isinstance(entry, dict) else entry  # charges not listed: the 0 entry
            vals = [fallback] if isinstance(fallback, int) else fallback
            lut[rows, : len(vals)] = vals
            for q, v in by_charge.items():
                vals = [v] if isinstance(v, int) else v
                lut[z * _CHARGE_SPAN + q + _CHARGE_OFFSET] = np.nan
                lut[z * _CHARGE_SPAN + q + _CHARGE_OFFSET, : len(vals)] = vals
    elif table == "edm":
        for sym, vals in EDM_VALENCES.items():
            z = atomic_number(sym)
            lut[z * _CHARGE_SPAN : (z + 1) * _CHARGE_SPAN, : len(vals)] = vals
    else:  # strict
        for sym, by_charge in ALLOWED_VALENCES.items():
            z = atomic_number(sym)
            for q, vals in by_charge.items():
                lut[z * _CHARGE_SPAN + q + _CHARGE_OFFSET, : len(vals)] = vals
    return lut


def bond_order_sums(bonds: np.ndarray, num_atoms: int, orders: np.ndarray = BOND_ORDER) -> np.ndarray:
    """Each atom's sum of bond orders (by default aromatic = 1.5) from ``[B, 3]`` rows ``(i, j, type)``."""
    valence = np.zeros(num_atoms)
    if len(bonds):
        order = orders[bonds[:, 2]]
        valence += np.bincount(bonds[:, 0], order, num_atoms) + np.bincount(bonds[:, 1], order, num_atoms)
    return valence


def allowed_valences(z: np.ndarray, q: np.ndarray, table: str) -> np.ndarray:
    """``[atoms, 3]`` valences allowed for atomic numbers ``z`` with formal charges ``q``; NaN = none."""
    key = z * _CHARGE_SPAN + np.clip(q, -_CHARGE_OFFSET, _CHARGE_OFFSET) + _CHARGE_OFFSET
    return _valence_lookup(table)[key]


def _as_molecules(items, vocab=None) -> list[Molecule3D]:
    items = list(items)
    if items and not isinstance(items[0], Molecule3D):
        if vocab is None:
            raise ValueError("encoded records need their vocabulary: pass vocab=...")
        return [r.decode(vocab) for r in items]
    return items


def _flat(mols: Sequence[Molecule3D]):
    """Concatenated atoms and bonds (global indices) of all molecules, and the molecule of every atom."""
    sizes = np.array([m.num_atoms for m in mols], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(mols) else np.zeros(0, np.int64)
    z = np.concatenate([m.atomic_numbers for m in mols]) if mols else np.zeros(0, np.int64)
    q = np.concatenate([m.charges for m in mols]) if mols else np.zeros(0, np.int64)
    bonds = [m.bonds + np.array([o, o, 0]) for m, o in zip(mols, offsets.tolist(), strict=True)
             if m.bonds is not None and len(m.bonds)]  # fmt: skip
    b = np.concatenate(bonds) if bonds else np.zeros((0, 3), np.int64)
    return z, q, b, np.repeat(np.arange(len(mols)), sizes), sizes


def stability(items, vocab=None, table: str = "strict") -> dict:
    """Atom and molecule stability (fractions) and the per-molecule ``stable`` flags, from the bonds given,
    under the convention ``table`` (:data:`VALENCE_TABLES`): ``strict`` (geodiff: one valence per element
    and charge, aromatic 1.5), ``eqgat`` / ``midi`` (EQGAT-diff's and MiDi's ``check_stability`` as their
    code runs: their table, aromatic bonds 1, unlisted charges as neutral), ``edm`` (EDM's, by element)."""
    mols = _as_molecules(items, vocab)
    table = valence_table(table)
    z, q, b, mol_of_atom, sizes = _flat(mols)
    valence = bond_order_sums(b, len(z), BOND_ORDER_INT if table in ("eqgat", "midi") else BOND_ORDER)
    allowed = allowed_valences(z, q, table)  # [atoms, 3]
    with np.errstate(invalid="ignore"):
        atom_ok = (np.abs(allowed - valence[:, None]) < 1e-6).any(axis=1)
    bad_per_mol = np.bincount(mol_of_atom, ~atom_ok, len(mols)) if len(mols) else np.zeros(0)
    mol_ok = bad_per_mol == 0
    return {
        "atom_stability": float(atom_ok.mean()) if len(z) else 0.0,
        "mol_stability": float(mol_ok.mean()) if len(mols) else 0.0,
        "stable": mol_ok,
        "unstable_atoms": _unstable_counts(z[~atom_ok], q[~atom_ok], valence[~atom_ok]),
    }


def _unstable_counts(z: np.ndarray, q: np.ndarray, valence: np.ndarray) -> dict[str, int]:
    """How often each unstable (element, charge, bond-order sum) occurs, most frequent first, as
    ``"C valence 3"``, ``"N+ valence 3"``, ``"O+2 valence 1"``: what a generator gets wrong."""
    from geodiff.data.structures import element_symbol

    counts = Counter()
    for zi, qi, vi in zip(z.tolist(), q.tolist(), valence.tolist(), strict=True):
        sign = "" if qi == 0 else ("+" if qi > 0 else "-") if abs(qi) == 1 else f"{qi:+d}"
        counts[f"{element_symbol(zi)}{sign} valence {vi:g}"] += 1
    return dict(counts.most_common())


def most_unstable(counts: dict[str, int], k: int = 3) -> str:
    """The ``k`` most frequent entries of ``unstable_atoms`` as one line: ``C valence 5 (65), ...``."""
    return ", ".join(f"{kind} ({n})" for kind, n in list(counts.items())[:k]) or "none"


def canonical_smiles(mol: Chem.Mol) -> str:
    return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))


def _validity_one(m: Molecule3D, single_fragment: bool = False) -> tuple[str | None, bool]:
    """Canonical SMILES of the largest fragment when ``m`` sanitises, else None (one molecule at a time), and
    whether RDKit gave any atom an implicit hydrogen. ``single_fragment``: the bond graph is known to be
    connected; the fragment split (a copy) is skipped. Molecules RDKit could crash on are screened out before
    (:func:`rdkit_unsafe`)."""
    if m.num_atoms == 0:
        return None, False
    try:
        mol = to_rdkit(m, sanitize=True, conformer=False, implicit_hydrogens=True)
    except Exception:  # RDKit raises several error types for impossible valences / kekulisation
        return None, False
    implicit = any(a.GetNumImplicitHs() for a in mol.GetAtoms())
    if not single_fragment:
        mol = max(Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False), key=lambda f: f.GetNumAtoms())
    return canonical_smiles(mol), implicit


def rdkit_validity(items, vocab=None) -> dict:
    """Validity, connected validity, validity without implicit hydrogens (module docstring), canonical SMILES
    of the valid molecules' largest fragments and the per-molecule ``valid`` / ``single_fragment`` /
    ``implicit_h`` flags (fragments from the bond graph)."""
    RDLogger.DisableLog("rdApp.*")
    mols = _as_molecules(items, vocab)
    single = connected_fraction(mols)[1]
    unsafe = rdkit_unsafe(mols)  # an atom with more bonds than any element: invalid, and RDKit could crash
    valid, implicit = np.zeros(len(mols), bool), np.zeros(len(mols), bool)
    smiles: list[str] = []
    for k, m in enumerate(progress(mols, desc="RDKit validity", unit="mol")):
        s, implicit[k] = (None, False) if unsafe[k] else _validity_one(m, bool(single[k]))
        valid[k] = s is not None
        smiles += [s] if s is not None else []
    n = max(len(mols), 1)
    return {
        "num_molecules": len(mols),
        "validity": float(valid.sum()) / n,
        "connected_validity": float((valid & single).sum()) / n,
        "validity_no_implicit_h": float((valid & single & ~implicit).sum()) / n,
        "smiles": smiles,
        "valid": valid,
        "single_fragment": single,
        "implicit_h": implicit,
    }


def connected_fraction(items, vocab=None) -> tuple[float, np.ndarray]:
    """Fraction of molecules whose bond graph is a single component (and the per-molecule flags)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    mols = _as_molecules(items, vocab)
    if not mols:
        return 0.0, np.zeros(0, bool)
    z, _, b, mol_of_atom, _ = _flat(mols)
    adj = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(len(z), len(z)))
    _, labels = connected_components(adj, directed=False)
    comps = np.zeros(len(mols), np.int64)
    first = np.unique(labels, return_index=True)[1]  # one atom per component
    np.add.at(comps, mol_of_atom[first], 1)
    ok = comps == 1
    return float(ok.mean()), ok


def uniqueness_novelty(smiles: Sequence[str], reference=None) -> dict:
    """Uniqueness = distinct / valid SMILES; novelty = distinct SMILES not in ``reference`` (SMILES, or a
    hashed :class:`~geodiff.metrics.novelty.SmilesSet`) / distinct."""
    distinct = set(smiles)
    out = {"uniqueness": len(distinct) / len(smiles) if smiles else 0.0}
    if hasattr(reference, "novelty"):  # a hashed SmilesSet
        out["novelty"] = reference.novelty(distinct)
    elif reference is not None:
        ref = set(reference)
        out["novelty"] = len(distinct - ref) / len(distinct) if distinct else 0.0
    return out


def _tv(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return float("nan")
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def _geometry(mols: Sequence[Molecule3D]) -> tuple[dict[int, list], dict[str, list]]:
    """Bond lengths by bond type and bond angles (degrees) by central element."""
    lengths: dict[int, list] = {}
    angles: dict[str, list] = {}
    for m in mols:
        if m.bonds is None or not len(m.bonds):
            continue
        i, j, t = m.bonds.T
        d = np.linalg.norm(m.pos[i] - m.pos[j], axis=1)
        for code in np.unique(t):
            lengths.setdefault(int(code), []).append(d[t == code])
        # angles a-c-b for every pair of bonds sharing the centre c
        ends = np.concatenate([np.stack([i, j], 1), np.stack([j, i], 1)])  # (centre, neighbour)
        order = np.argsort(ends[:, 0], kind="stable")
        ends = ends[order]
        centres, starts, counts = np.unique(ends[:, 0], return_index=True, return_counts=True)
        for c, s, n in zip(centres.tolist(), starts.tolist(), counts.tolist(), strict=True):
            if n < 2:
                continue
            nb = ends[s : s + n, 1]
            u = m.pos[nb] - m.pos[c]
            u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
            iu = np.triu_indices(n, 1)
            cos = np.clip((u[iu[0]] * u[iu[1]]).sum(1), -1, 1)
            angles.setdefault(element_symbol(m.atomic_numbers[c]), []).append(np.degrees(np.arccos(cos)))
    cat = lambda d: {k: np.concatenate(v) for k, v in d.items()}  # noqa: E731
    return cat(lengths), cat(angles)


def distribution_metrics(mols: Sequence[Molecule3D], reference: Sequence[Molecule3D]) -> dict:
    """Total variation of atom types, atom counts and bond types; Wasserstein-1 of bond lengths per bond
    type (Angstrom) and of bond angles per central element (degrees), with count-weighted means."""
    from scipy.stats import wasserstein_distance

    def counts(ms):
        atoms = Counter(element_symbol(z) for m in ms for z in m.atomic_numbers.tolist())
        sizes = Counter(m.num_atoms for m in ms)
        bonds = Counter(BOND_NAMES[int(t)] for m in ms if m.bonds is not None for t in m.bonds[:, 2].tolist())
        return atoms, sizes, bonds

    (a1, n1, b1), (a2, n2, b2) = counts(mols), counts(reference)
    out = {"atom_type_tv": _tv(a1, a2), "num_atoms_tv": _tv(n1, n2), "bond_type_tv": _tv(b1, b2)}
    (l1, g1), (l2, g2) = _geometry(mols), _geometry(reference)
    per_len = {BOND_NAMES[k]: float(wasserstein_distance(l1[k], l2[k])) for k in sorted(l1) if k in l2}
    per_ang = {k: float(wasserstein_distance(g1[k], g2[k])) for k in sorted(g1) if k in g2}
    w_len = {BOND_NAMES[k]: len(l1[k]) for k in l1 if k in l2}
    w_ang = {k: len(g1[k]) for k in g1 if k in g2}

    def mean(per, w):
        tot = sum(w[k] for k in per)
        return sum(per[k] * w[k] for k in per) / tot if tot else float("nan")

    out.update({"bond_length_w1": mean(per_len, w_len), "bond_angle_w1": mean(per_ang, w_ang),
                "bond_length_w1_by_type": per_len, "bond_angle_w1_by_element": per_ang})  # fmt: skip
    return out


CLOSE_ATOMS = 0.5  # Angstrom: no two atoms of a real molecule are closer (H2's bond is 0.74)


def close_atoms(mols: Sequence[Molecule3D], cutoff: float = CLOSE_ATOMS) -> list[str]:
    """Names (or indices) of the molecules with two atoms closer than ``cutoff``: impossible geometry, which
    bond-based metrics do not see (atoms on one point can still be "stable" and "valid"). One KD-tree over
    all molecules, each moved far from the others."""
    from scipy.spatial import cKDTree

    if not mols:
        return []
    span = max(float(np.ptp(m.pos, axis=0).max()) for m in mols) + 10 * cutoff
    pos = np.concatenate([m.pos - m.pos.min(0) + [k * span, 0.0, 0.0] for k, m in enumerate(mols)])
    pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
    owner = np.repeat(np.arange(len(mols)), [m.num_atoms for m in mols])
    flagged = np.unique(owner[pairs[:, 0]]) if len(pairs) else []
    return [mols[k].name or f"#{k}" for k in flagged]


def molecule_metrics(items, vocab=None, table: str = "strict", reference_smiles: Iterable[str] | None = None,
                     reference: Sequence[Molecule3D] | None = None) -> dict:  # fmt: skip
    """Stability (``table``), validity, connected validity, connected fraction, uniqueness, novelty (with
    ``reference_smiles``), distribution metrics (with ``reference`` molecules), on the bonds the molecules
    carry (perceive them first with :func:`geodiff.metrics.bonds.perceive` when they have none)."""
    mols = _as_molecules(items, vocab)
    stab = stability(mols, table=table)
    val = rdkit_validity(mols)
    out = {
        "num_molecules": len(mols),
        "atom_stability": stab["atom_stability"],
        "mol_stability": stab["mol_stability"],
        "unstable_atoms": stab["unstable_atoms"],
        "validity": val["validity"],
        "connected_validity": val["connected_validity"],
        "validity_no_implicit_h": val["validity_no_implicit_h"],
        "connected": connected_fraction(mols)[0],
        **uniqueness_novelty(val["smiles"], reference_smiles),
        "close_atoms": close_atoms(mols),
        "valence_table": valence_table(table),
    }
    if reference is not None:
        out["distributions"] = distribution_metrics(mols, reference)
    return out
