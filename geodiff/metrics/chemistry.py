"""Chemistry metrics of generated molecules. This first part: RDKit validity (the metrics issue adds
stability, uniqueness, novelty and distribution metrics).

* validity: RDKit sanitisation succeeds on the molecule as generated (atoms, charges, bonds);
* connected validity: valid and a single fragment (EQGAT-diff / MiDi convention).
"""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem, RDLogger

from geodiff.data.molecules import MoleculeRecord, MoleculeVocabulary, record_to_mol

__all__ = ["rdkit_validity"]


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
