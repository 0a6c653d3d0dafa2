"""RDKit validity on hand-built molecules with known answers."""

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
    assert sorted(scores["smiles"]) == sorted(["CCO", "c1ccncc1"])
    assert rdkit_validity([], VOCAB)["validity"] == 0.0
    assert torch.equal(good.bond_types, rec("CCO").bond_types)
