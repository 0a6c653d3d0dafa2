"""Molecule data: RDKit bond perception, records, QM9 npz, caching, statistics, batching."""

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.data.molecules import (
    MoleculeDataset,
    MoleculeVocabulary,
    collate_molecules,
    fully_connected_edges,
    mol_to_record,
    perceive_bonds,
    read_qm9_npz,
    record_to_mol,
)
from geodiff.errors import GeodiffError, GeodiffValueError

VOCAB = MoleculeVocabulary()


def embed(smiles: str, seed: int = 1) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return mol


@pytest.mark.parametrize("smiles", ["CCO", "c1ccccc1", "CC(=O)N", "C#N", "OC(=O)C(F)F"])
def test_perceive_bonds_recovers_rdkit_molecules(smiles):
    mol = embed(smiles)
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    found = perceive_bonds(z, mol.GetConformer().GetPositions())
    assert Chem.MolToSmiles(Chem.RemoveHs(found)) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_record_round_trip_keeps_aromatic_bonds_and_charges():
    mol = embed("c1ccncc1")
    rec = mol_to_record(mol, VOCAB)
    assert set(rec.bond_types.tolist()) == {1, 4}  # C-H single, ring aromatic (4), not 1.5 -> 1
    assert bool((rec.bond_index[0] < rec.bond_index[1]).all())
    back = record_to_mol(rec, VOCAB, sanitize=True)
    assert Chem.MolToSmiles(back) == Chem.MolToSmiles(mol)
    charged = embed("C[NH3+]")
    rec = mol_to_record(charged, VOCAB)
    assert VOCAB.charges[int(rec.charges[1])] == 1
    assert Chem.MolToSmiles(record_to_mol(rec, VOCAB, sanitize=True)) == Chem.MolToSmiles(charged)


AROMATIC_RINGS = ["c1cc[nH]c1", "c1ccoc1", "O=c1cccc[nH]1", "c1ccc2ccccc2c1", "Cc1nc[nH]c1"]


@pytest.mark.parametrize("smiles", AROMATIC_RINGS)
def test_kekulized_records_are_integer_bond_orders_and_stable(smiles):
    from geodiff.metrics.chemistry import stability

    mol = embed(smiles)
    aromatic, kekule = mol_to_record(mol, VOCAB), mol_to_record(mol, VOCAB, kekulize=True)
    assert 4 in aromatic.bond_types.tolist() and set(kekule.bond_types.tolist()) == {1, 2}
    assert torch.equal(aromatic.bond_index, kekule.bond_index)  # the same bonds, only the orders differ
    # the Kekule form is the same molecule: RDKit re-perceives the aromatic rings on sanitisation
    assert Chem.MolToSmiles(record_to_mol(kekule, VOCAB, sanitize=True)) == Chem.MolToSmiles(mol)
    # with aromatic = 1.5, ring N-H (4), ring O (3), ring C=O (5) and fused ring carbons (4.5) miss their
    # valence; in Kekule form every atom is stable
    assert stability([kekule], VOCAB)["mol_stability"] == 1.0
    assert stability([aromatic], VOCAB)["mol_stability"] == 0.0


def test_a_molecule_without_kekule_form_is_a_clear_error():
    mol = Chem.MolFromSmiles("c1cccc1", sanitize=False)  # C5 ring with aromatic flags and no hydrogens
    mol = Chem.RWMol(mol)
    conf = Chem.Conformer(5)
    mol.AddConformer(conf, assignId=True)
    with pytest.raises(GeodiffValueError, match="cannot be kekulized"):
        mol_to_record(mol.GetMol(), VOCAB, name="cp", kekulize=True)
    assert 4 in mol_to_record(mol.GetMol(), VOCAB).bond_types.tolist()  # kept as given without kekulize


def test_unknown_element_and_bad_positions_are_clear_errors():
    with pytest.raises(GeodiffValueError, match="unknown element 'S'"):
        mol_to_record(embed("CS"), VOCAB)
    with pytest.raises(GeodiffValueError, match="positions"):
        perceive_bonds([6, 8], np.full((2, 3), np.nan))
    with pytest.raises(GeodiffError, match="bond perception failed"):
        perceive_bonds([6, 6], np.array([[0.0, 0, 0], [5.0, 0, 0]]))  # two carbons 5 A apart, charge 0


def test_fully_connected_edges():
    ei, eb = fully_connected_edges(torch.tensor([2, 3]))
    assert ei.shape == (2, 2 + 6)
    assert bool((ei[0] != ei[1]).all())
    assert eb.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert ei.T.tolist()[:2] == [[0, 1], [1, 0]]
    assert bool((ei[:, 2:] >= 2).all())


def test_real_qm9_molecules(qm9_small):
    ds = qm9_small
    assert 280 <= len(ds) <= 300 and len(ds) + len(ds.failures) == 300
    assert all(isinstance(i, int) and "bond perception failed" in r for i, r in ds.failures)
    st = ds.statistics()
    assert st.atom_marginal[0] > 0.45 and st.atom_marginal[1] > 0.25  # QM9 is mostly H and C
    assert abs(sum(st.bond_marginal) - 1) < 1e-9 and st.bond_marginal[0] > 0.7
    assert max(st.num_atoms_hist) <= 29
    for i in (0, 17, len(ds) - 1):
        mol = record_to_mol(ds[i], ds.vocab, sanitize=True)  # the perceived graph is a valid molecule
        assert mol.GetNumAtoms() == ds[i].num_atoms
    sizes = st.sample_num_atoms(2000, torch.Generator().manual_seed(0))
    assert set(sizes.tolist()) <= set(st.num_atoms_hist)


def test_real_qm9_in_kekule_form_is_all_stable_and_cached_apart(qm9_small, qm9_npz, tmp_path):
    """The default (Kekule) training data passes the valence check; RDKit's aromatic form does not always."""
    from geodiff.metrics.chemistry import stability

    records = [qm9_small[i] for i in range(len(qm9_small))]
    assert 4 not in qm9_small.t["bond_types"].tolist()
    st = stability(records, qm9_small.vocab)
    assert st["mol_stability"] == 1.0 and st["unstable_atoms"] == {}
    arom = MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=tmp_path, limit=300, num_workers=1, progress=False,
                                        kekulize=False)  # fmt: skip
    kek = MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=tmp_path, limit=300, num_workers=1, progress=False)
    assert len(list(tmp_path.iterdir())) == 2  # one cache per form
    assert len(arom) == len(kek) == len(qm9_small) and torch.equal(arom.t["pos"], kek.t["pos"])
    assert 4 in arom.t["bond_types"].tolist()
    assert torch.equal(arom.t["bond_index"], kek.t["bond_index"])


def test_dataset_cache_round_trip(qm9_npz, tmp_path):
    a = MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=tmp_path, limit=40, num_workers=1, progress=False)
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and (cached[0] / "molecules.safetensors").is_file()
    b = MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=tmp_path, limit=40, num_workers=1, progress=False)
    assert len(a) == len(b) and a.failures == b.failures
    for k in a.t:
        assert torch.equal(a.t[k], b.t[k])
    assert b.statistics() == a.statistics()


def test_collate_builds_symmetric_edge_types(qm9_small):
    recs = [qm9_small[i] for i in range(5)]
    batch = collate_molecules(recs)
    assert batch.pos.shape[0] == sum(r.num_atoms for r in recs) == batch.batch.shape[0]
    assert batch.edge_index.shape[1] == sum(r.num_atoms * (r.num_atoms - 1) for r in recs)
    dense = torch.zeros(batch.pos.shape[0], batch.pos.shape[0], dtype=torch.long)
    dense[batch.edge_index[0], batch.edge_index[1]] = batch.edge_types
    assert torch.equal(dense, dense.T)
    assert int((batch.edge_types > 0).sum()) == 2 * sum(r.bond_types.numel() for r in recs)
    assert bool((batch.batch[batch.edge_index[0]] == batch.edge_batch).all())


def test_bad_npz_files(tmp_path):
    with pytest.raises(GeodiffError, match="file not found"):
        read_qm9_npz(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, num_atoms=np.array([2]), positions=np.zeros((1, 2, 3)))
    with pytest.raises(GeodiffError, match="lacks the QM9 keys"):
        read_qm9_npz(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(GeodiffError, match="not a readable npz"):
        read_qm9_npz(junk)
    with pytest.raises(GeodiffError, match="not a saved molecule dataset"):
        MoleculeDataset.load(tmp_path)
    with pytest.raises(GeodiffValueError, match="empty"):
        collate_molecules([])
