"""Molecule caches (``geodiff data molecules``): a GEOM-like set made here from drug-like SMILES that ship
with RDKit (its Contrib CDK2 ligands), with ETKDG + MMFF conformers, written as a multi-conformer SDF and as
a GEOM msgpack; conformer selection by energy, splits by molecule, memory-mapped reading (also in data-loader
worker processes), checksums and one-line errors."""

from pathlib import Path

import msgpack
import numpy as np
import pytest
import rdkit
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from torch.utils.data import DataLoader

from geodiff.data.cache import CachedMoleculeDataset, build_cache, read_index, split_of
from geodiff.data.molecules import collate_molecules
from geodiff.errors import GeodiffError

CONFS = 3


@pytest.fixture(scope="module")
def geom_like(tmp_path_factory):
    """8 CDK2 ligands x 3 MMFF-optimised conformers: an SDF (energies as ``totalenergy``) and a msgpack in
    GEOM's layout ``{smiles: {"conformers": [{"xyz": [[Z, x, y, z], ...], "totalenergy": E}]}}``."""
    root = tmp_path_factory.mktemp("geom")
    smi = Path(rdkit.__file__).parent / "Contrib" / "Fastcluster" / "cdk2.smi"
    smiles = [line.split()[-1] for line in smi.read_text().splitlines() if line.strip()][:8]
    writer, pack, energies = Chem.SDWriter(str(root / "geom.sdf")), {}, {}
    for k, s in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=CONFS, randomSeed=k))
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=100)
        key = Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
        energies[key] = sorted(e for _, e in results)
        confs = []
        for cid, (_, e) in zip(ids, results, strict=True):
            mol.SetProp("_Name", f"ligand{k}_conf{cid}")
            mol.SetProp("totalenergy", repr(e))
            writer.write(mol, confId=cid)
            pos = mol.GetConformer(cid).GetPositions()
            confs.append(
                {"xyz": [[a.GetAtomicNum(), *pos[a.GetIdx()]] for a in mol.GetAtoms()], "totalenergy": e}
            )
        pack[s] = {"conformers": confs}
    writer.close()
    (root / "geom.msgpack").write_bytes(msgpack.packb(pack))
    return root, energies


def test_sdf_cache_keeps_the_lowest_energy_conformers_and_splits_by_molecule(geom_like, tmp_path):
    root, energies = geom_like
    index = build_cache(root / "geom.sdf", tmp_path / "c", conformers=2, fractions=(0.5, 0.25, 0.25),
                        progress=False)  # fmt: skip
    splits = index["splits"]
    assert sum(s["molecules"] for s in splits.values()) == 8 and index["num_failures"] == 0
    assert all(s["conformers"] == 2 * s["molecules"] for s in splits.values())
    ligand_split = {}
    for split in ("train", "val", "test"):
        ds = CachedMoleculeDataset(tmp_path / "c", split)
        for i in range(len(ds)):
            ligand_split.setdefault(ds[i].name.split("_conf")[0], set()).add(split)
    assert len(ligand_split) == 8 and all(len(s) == 1 for s in ligand_split.values())  # no molecule in two
    # each molecule's split is a seeded hash of its canonical SMILES, whatever the file order
    assert sorted(split_of(k, 0, (0.5, 0.25, 0.25)) for k in energies) == sorted(
        next(iter(s)) for s in ligand_split.values()
    )


def test_cache_records_match_the_source_and_the_energy_order(geom_like, tmp_path):
    root, energies = geom_like
    build_cache(root / "geom.sdf", tmp_path / "c", conformers=1, fractions=(1.0, 0.0, 0.0), progress=False)
    ds = CachedMoleculeDataset(tmp_path / "c", "train")
    assert len(ds) == 8
    suppl = [m for m in Chem.SDMolSupplier(str(root / "geom.sdf"), removeHs=False)]
    by_name = {m.GetProp("_Name"): m for m in suppl}
    for i in range(len(ds)):
        r = ds[i]
        src = by_name[r.name]
        assert float(src.GetProp("totalenergy")) == min(
            energies[Chem.MolToSmiles(Chem.RemoveHs(src), isomericSmiles=False)]
        )
        np.testing.assert_allclose(r.pos.numpy(), src.GetConformer().GetPositions(), atol=1e-5)
        assert r.bond_index.shape[1] == src.GetNumBonds() and bool((r.bond_index[0] < r.bond_index[1]).all())
    stats = ds.statistics()
    assert abs(sum(stats.atom_marginal) - 1) < 1e-9 and sum(stats.num_atoms_hist.values()) == 8


def test_msgpack_cache_and_worker_processes(geom_like, tmp_path):
    root, _ = geom_like
    index = build_cache(root / "geom.msgpack", tmp_path / "c", conformers=None, fractions=(1.0, 0.0, 0.0),
                        shard_size=5, progress=False)  # fmt: skip
    assert (
        index["splits"]["train"]["conformers"] == 8 * CONFS and len(index["splits"]["train"]["shards"]) == 5
    )
    ds = CachedMoleculeDataset(tmp_path / "c", "train")
    assert ds.molecule_ids().tolist() == [m for m in range(8) for _ in range(CONFS)]
    # the training SMILES an export stores come from one conformer per molecule (shards of 5 conformers)
    from geodiff.data.datamodules import MoleculeDataModule
    from geodiff.metrics.novelty import SmilesSet

    dm = MoleculeDataModule(str(tmp_path / "c"))
    first = list(dm.training_molecules())
    assert len(first) == 8 and len(SmilesSet.from_molecules(first, chunk=3)) == 8
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_molecules)
    batches = list(loader)
    assert sum(b.num_graphs for b in batches) == 8 * CONFS
    assert torch.equal(batches[0].pos[: ds[0].num_atoms], ds[0].pos)


def test_bad_inputs_are_one_line_and_leave_nothing(geom_like, tmp_path, monkeypatch):
    root, _ = geom_like
    data = (root / "geom.msgpack").read_bytes()
    (tmp_path / "cut.msgpack").write_bytes(data[: len(data) // 2])
    with pytest.raises(GeodiffError, match="truncated msgpack"):
        build_cache(tmp_path / "cut.msgpack", tmp_path / "c1", progress=False)
    assert not (tmp_path / "c1").exists()
    # one msgpack object (a GEOM chunk) above the budget: refused in one line naming the override
    (tmp_path / "big.msgpack").write_bytes(msgpack.packb({"C": {"pad": "x" * (2 * 2**20)}}))
    with monkeypatch.context() as m:
        m.setenv("GEODIFF_MAX_MSGPACK_MB", "1")
        with pytest.raises(GeodiffError, match="larger than 1 MB .set GEODIFF_MAX_MSGPACK_MB"):
            build_cache(tmp_path / "big.msgpack", tmp_path / "c1", progress=False)
    assert not (tmp_path / "c1").exists()
    # a header claiming a 2^31-element array is refused before anything is allocated
    (tmp_path / "claim.msgpack").write_bytes(b"\xdd\x7f\xff\xff\xff")
    with pytest.raises(GeodiffError, match="malformed msgpack|truncated msgpack|no usable molecules"):
        build_cache(tmp_path / "claim.msgpack", tmp_path / "c1", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeodiffError, match="no .sdf file in this folder"):
        build_cache(tmp_path / "empty", tmp_path / "c2", progress=False)
    (tmp_path / "empty" / "nothing.sdf").write_text("")  # an empty SDF holds no record
    with pytest.raises(GeodiffError, match="no molecules"):
        build_cache(tmp_path / "empty", tmp_path / "c2", progress=False)
    assert not (tmp_path / "c2").exists()
    build_cache(root / "geom.sdf", tmp_path / "c3", fractions=(1.0, 0.0, 0.0), progress=False)
    with pytest.raises(GeodiffError, match="is not empty"):
        build_cache(root / "geom.sdf", tmp_path / "c3", progress=False)
    shard = next((tmp_path / "c3" / "train").glob("shard_*"))
    pos = np.load(shard / "pos.npy")
    pos[0, 0] += 1.0
    np.save(shard / "pos.npy", pos)
    with pytest.raises(GeodiffError, match="corrupt"):
        CachedMoleculeDataset(tmp_path / "c3", "train")[0]
    index = read_index(tmp_path / "c3")
    (tmp_path / "c3" / "index.json").write_text(
        (tmp_path / "c3" / "index.json").read_text().replace(f'"version": {index["version"]}', '"version": 0')
    )
    with pytest.raises(GeodiffError, match="version 0; this geodiff reads version 1"):
        CachedMoleculeDataset(tmp_path / "c3", "train")
