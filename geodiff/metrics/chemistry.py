"""Chemistry metrics of generated molecules (first part; the metrics issue adds bonds from 3D, novelty and
distribution metrics).

* validity: RDKit sanitisation succeeds on the molecule as generated (atoms, charges, bonds);
* connected validity: valid and a single fragment (EQGAT-diff / MiDi convention);
* stability, on the bonds the model generated (EQGAT-diff / MiDi convention): an atom is stable when the
  sum of its bond orders, with aromatic bonds counted as 1.5 (never truncated to 1), equals a valence its
  element allows at its formal charge (charge-aware table, MiDi style); a molecule is stable when all
  its atoms are;
* uniqueness: distinct canonical SMILES among the connected-valid molecules.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem, RDLogger

from geodiff.data.molecules import MoleculeRecord, MoleculeVocabulary, record_to_mol

__all__ = ["rdkit_validity", "stability", "ALLOWED_VALENCES", "molecule_metrics"]

#: valences allowed per element and formal charge (charge-aware, as in MiDi's table)
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
_ORDER = {1: 1.0, 2: 2.0, 3: 3.0, 4: 1.5}


def stability(records: Sequence[MoleculeRecord], vocab: MoleculeVocabulary) -> dict[str, float]:
    """Atom and molecule stability (fractions) from the generated bond orders."""
    import torch

    stable_atoms = total_atoms = stable_mols = 0
    for r in records:
        order = torch.tensor([_ORDER[int(t)] for t in r.bond_types.tolist()], dtype=torch.float64)
        valence = torch.zeros(r.num_atoms, dtype=torch.float64)
        if order.numel():
            valence.index_add_(0, r.bond_index[0], order).index_add_(0, r.bond_index[1], order)
        ok = 0
        for v, a, c in zip(valence.tolist(), r.atom_types.tolist(), r.charges.tolist(), strict=True):
            allowed = ALLOWED_VALENCES.get(vocab.atoms[a], {}).get(vocab.charges[c], ())
            ok += any(abs(v - x) < 1e-6 for x in allowed)
        stable_atoms += ok
        total_atoms += r.num_atoms
        stable_mols += ok == r.num_atoms
    return {
        "atom_stability": stable_atoms / max(total_atoms, 1),
        "mol_stability": stable_mols / max(len(records), 1),
    }


def molecule_metrics(records: Sequence[MoleculeRecord], vocab: MoleculeVocabulary) -> dict[str, float]:
    """Stability, validity, connected validity and uniqueness (unique / connected-valid) of a sample."""
    val = rdkit_validity(records, vocab)
    uniq = len(set(val["smiles"])) / max(len(val["smiles"]), 1)
    return {**stability(records, vocab), "validity": val["validity"],
            "connected_validity": val["connected_validity"], "uniqueness": uniq,
            "num_molecules": val["num_molecules"]}  # fmt: skip


def rdkit_validity(records: Sequence[MoleculeRecord], vocab: MoleculeVocabulary) -> dict[str, float]:
    """Fractions of valid and of connected-valid molecules, plus the count and their canonical SMILES."""
    RDLogger.DisableLog("rdApp.*")
    valid = connected = 0
    smiles: list[str] = []
    for r in records:
        try:
            mol = record_to_mol(r, vocab, sanitize=True)
        except Exception:  # RDKit raises several error types for impossible valences / kekulisation
            continue
        valid += 1
        if len(Chem.GetMolFrags(mol)) == 1:
            connected += 1
            smiles.append(Chem.MolToSmiles(Chem.RemoveHs(mol)))
    n = max(len(records), 1)
    return {"num_molecules": len(records), "validity": valid / n, "connected_validity": connected / n,
            "smiles": smiles}  # fmt: skip
