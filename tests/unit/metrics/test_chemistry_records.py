"""Metrics on pipeline records (MoleculeRecord + vocabulary), as training validation and sampling use them."""

import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.data.molecules import MoleculeRecord, MoleculeVocabulary, mol_to_record
from geodiff.metrics.chemistry import rdkit_validity

VOCAB = MoleculeVocabulary()


def rec(smiles):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    return mol_to_record(mol, VOCAB)


def test_known_answers():
    good = rec("CCO")
    aromatic = rec("c1ccncc1")
    pair = rec("C.O")  # valid but two fragments
    bad = MoleculeRecord(good.pos, good.atom_types, good.charges, good.bond_index, good.bond_types.clone())
    bad.bond_types[0] = 3  # a triple bond on an sp3 carbon with 3 H: pentavalent carbon
    scores = rdkit_validity([good, aromatic, pair, bad], VOCAB)
    assert scores["num_molecules"] == 4
    assert scores["validity"] == 0.75 and scores["connected_validity"] == 0.5
    assert sorted(scores["smiles"]) == sorted(["CCO", "c1ccncc1", "C"])  # largest fragment of C.O
    assert rdkit_validity([], VOCAB)["validity"] == 0.0
    assert torch.equal(good.bond_types, rec("CCO").bond_types)


def test_stability_known_answers():
    from geodiff.metrics.chemistry import molecule_metrics, stability

    benzene = rec("c1ccccc1")  # aromatic bonds count 1.5: every C has 1.5 + 1.5 + 1 = 4
    ammonium = rec("C[NH3+]")  # N+ with 4 bonds is stable in the charge-aware table
    ethanol = rec("CCO")
    radical = MoleculeRecord(
        ethanol.pos[:-1],
        ethanol.atom_types[:-1],
        ethanol.charges[:-1],
        ethanol.bond_index[:, :-1],
        ethanol.bond_types[:-1],
    )  # O-H removed: O radical
    s = stability([benzene, ammonium, ethanol, radical], VOCAB)
    assert s["mol_stability"] == 0.75
    n_atoms = sum(r.num_atoms for r in (benzene, ammonium, ethanol, radical))
    assert abs(s["atom_stability"] - (n_atoms - 1) / n_atoms) < 1e-12  # only the radical O is unstable
    m = molecule_metrics([ethanol, rec("CCO"), benzene], VOCAB)
    assert m["uniqueness"] == 2 / 3 and m["connected_validity"] == 1.0
