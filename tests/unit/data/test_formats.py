"""Other molecule inputs: SDF files/folders (with a broken record) and original QM9 xyz (folder, tar.bz2)."""

import tarfile

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.data.molecules import MoleculeVocabulary, dataset_from_qm9_xyz, dataset_from_sdf, iter_qm9_xyz
from geodiff.errors import GeodiffError

DRUGLIKE = ["CC(=O)Oc1ccccc1C(=O)O", "Clc1ccc(cc1)S(=O)(=O)N", "CCOP(=O)(OCC)OCC", "C[N+](C)(C)CC(=O)[O-]"]


def write_sdf(path, smiles, broken=False):
    w = Chem.SDWriter(str(path))
    for k, smi in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        mol.SetProp("_Name", f"mol{k}")
        w.write(mol)
    w.close()
    if broken:  # append a record whose atom line is garbage
        with open(path, "a") as f:
            f.write("broken\n  junk\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nnot an atom line\n$$$$\n")


def test_sdf_file_with_a_broken_record(tmp_path):
    path = tmp_path / "mols.sdf"
    write_sdf(path, DRUGLIKE, broken=True)
    ds = dataset_from_sdf(path, progress=False)
    assert len(ds) == 4 and len(ds.failures) == 1 and "could not read" in ds.failures[0][1]
    assert ds.vocab.atoms == ("H", "C", "N", "O", "P", "S", "Cl")
    charges = {ds.vocab.charges[c] for c in ds.t["charges"].tolist()}
    assert charges == {-1, 0, 1}  # the zwitterion keeps its formal charges
    assert set(ds.t["bond_types"].tolist()) == {1, 2}  # aromatic rings kekulized by default
    arom = dataset_from_sdf(path, progress=False, kekulize=False)
    assert set(arom.t["bond_types"].tolist()) == {1, 2, 4} and len(arom) == 4


def test_sdf_folder_and_fixed_vocabulary(tmp_path):
    write_sdf(tmp_path / "a.sdf", ["CCO", "CCN"])
    write_sdf(tmp_path / "b.sdf", ["CS"])  # S is not in the QM9 vocabulary: skipped with its reason
    ds = dataset_from_sdf(tmp_path, vocab=MoleculeVocabulary(), progress=False)
    assert len(ds) == 2 and len(ds.failures) == 1 and "unknown element 'S'" in ds.failures[0][1]
    with pytest.raises(GeodiffError, match="not found"):
        dataset_from_sdf(tmp_path / "nothing_here")


def qm9_xyz_text(smiles, seed=0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    pos = mol.GetConformer().GetPositions()
    lines = [str(mol.GetNumAtoms()), "gdb 1\t157.7\t157.7\t157.7"]
    for a, p in zip(mol.GetAtoms(), pos, strict=True):
        # QM9 writes tiny numbers in Mathematica style, e.g. 1.2*^-6
        lines.append(f"{a.GetSymbol()}\t{p[0]:.8f}\t{p[1]:.6E}\t{p[2]:.8f}\t0.0".replace("E", "*^"))
    return "\n".join(lines + ["0.0\t0.0", "C\tC", "InChI=1S/x\tInChI=1S/x"]) + "\n"


def test_qm9_xyz_folder_and_archive(tmp_path):
    folder = tmp_path / "xyz"
    folder.mkdir()
    for k, smi in enumerate(["CCO", "C#N", "OC=O"]):
        (folder / f"dsgdb9nsd_{k + 1:06d}.xyz").write_text(qm9_xyz_text(smi, k))
    (folder / "dsgdb9nsd_000004.xyz").write_text("5\n\nC 0 0 0\n")  # truncated
    with pytest.raises(GeodiffError, match="truncated"):
        list(iter_qm9_xyz(folder))
    (folder / "dsgdb9nsd_000004.xyz").unlink()
    ds = dataset_from_qm9_xyz(folder, progress=False)
    assert len(ds) == 3 and ds.failures == []
    assert ds.names[0] == "dsgdb9nsd_000001"
    archive = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f.name)
    ds2 = dataset_from_qm9_xyz(archive, progress=False)
    assert len(ds2) == 3 and ds2.statistics() == ds.statistics()
    with pytest.raises(GeodiffError, match="expected a folder"):
        list(iter_qm9_xyz(tmp_path / "missing.tar.bz2"))
