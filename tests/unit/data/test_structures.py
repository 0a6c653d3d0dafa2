"""The one molecule type (Molecule3D) and the one SDF reader: RDKit and model-class round trips."""

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.data.molecules import MoleculeVocabulary, encode, mol_to_record, record_to_mol
from geodiff.data.structures import Molecule3D, iter_sdf, read_sdf, read_sdf_rdkit
from geodiff.errors import GeodiffError, GeodiffValueError


def embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return mol


@pytest.mark.parametrize("smiles", ["CCO", "C[NH3+]", "c1ccncc1", "OC(=O)C#N"])
def test_rdkit_model_classes_rdkit_round_trip(smiles):
    mol = embedded(smiles)
    m = Molecule3D.from_rdkit(mol, name="x")
    assert m.num_atoms == mol.GetNumAtoms() and m.bonds.shape == (mol.GetNumBonds(), 3)
    assert (m.bonds[:, 0] < m.bonds[:, 1]).all()
    vocab = MoleculeVocabulary()
    rec = encode(m, vocab)
    back = rec.decode(vocab)
    np.testing.assert_array_equal(back.atomic_numbers, m.atomic_numbers)
    np.testing.assert_array_equal(back.charges, m.charges)
    np.testing.assert_array_equal(back.bonds, m.bonds)
    np.testing.assert_allclose(back.pos, m.pos, atol=1e-5)  # float32 model tensors
    assert back.name == "x"
    # the RDKit molecule built back is the same molecule (canonical SMILES with charges and aromaticity)
    assert Chem.MolToSmiles(back.to_rdkit(sanitize=True)) == Chem.MolToSmiles(mol)
    assert Chem.MolToSmiles(record_to_mol(rec, vocab, sanitize=True)) == Chem.MolToSmiles(mol)
    assert record_to_mol(rec, vocab).GetProp("_Name") == "x"
    # kekulized records carry no aromatic class, and describe the same molecule
    kek = mol_to_record(mol, vocab, kekulize=True)
    assert 4 not in kek.bond_types.tolist()
    assert Chem.MolToSmiles(record_to_mol(kek, vocab, sanitize=True)) == Chem.MolToSmiles(mol)


def test_encode_refuses_what_the_vocabulary_cannot_say():
    vocab = MoleculeVocabulary()
    with pytest.raises(GeodiffValueError, match="unknown element 'S'"):
        encode(Molecule3D.from_rdkit(embedded("CS")), vocab)
    with pytest.raises(GeodiffValueError, match="has no bonds"):
        encode(Molecule3D([6], [[0.0, 0.0, 0.0]]), vocab)
    with pytest.raises(GeodiffValueError, match="no 3D coordinates"):
        mol_to_record(Chem.MolFromSmiles("CC"), vocab)


def test_one_sdf_reader_for_every_use(tmp_path):
    path = tmp_path / "in.sdf"
    with Chem.SDWriter(str(path)) as w:
        for k, smi in enumerate(["CCO", "c1ccccc1"]):
            mol = embedded(smi, k)
            mol.SetProp("_Name", f"m{k}")
            w.write(mol)
    text = path.read_text()
    path.write_text(text + "garbage\n$$$$\n")  # a record RDKit cannot parse
    (tmp_path / "empty.sdf").write_text("")  # holds no record
    labels = [(label, mol is None) for label, mol, _ in iter_sdf(tmp_path)]
    assert labels == [("m0", False), ("m1", False), ("in.sdf#3", True)]
    mols, failures = read_sdf(path)
    assert [m.name for m in mols] == ["m0", "m1"] and failures[0][0] == "in.sdf#3"
    rd, names, failures = read_sdf_rdkit(path)
    assert names == ["m0", "m1"] and len(rd) == 2 and len(failures) == 1
    with pytest.raises(GeodiffError, match="not found"):
        list(iter_sdf(tmp_path / "missing.sdf"))


def test_no_other_sdf_reader_in_the_library():
    """Files are read by iter_sdf alone (record by record, checked before RDKit parses them): no RDKit file
    supplier anywhere in the library."""
    from pathlib import Path

    import geodiff

    root = Path(geodiff.__file__).parent
    assert not [p for p in root.rglob("*.py") if "SDMolSupplier" in p.read_text()]
