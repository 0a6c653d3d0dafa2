"""geodiff evaluate task=molecules on files a user has: SDF with a bad record, QM9 npz, SMILES reference."""

import json
import subprocess
import sys
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

ROOT = Path(__file__).resolve().parents[2]


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def write_sdf(path, smiles, broken_after=None):
    w = Chem.SDWriter(str(path))
    for s in smiles:
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=0)
        m.SetProp("_Name", s)
        w.write(m)
    w.close()
    if broken_after is not None:
        path.write_text(path.read_text() + "garbage\n  no counts line here\nM  END\n$$$$\n")


def test_evaluate_sdf_with_a_bad_record_and_smiles_reference(tmp_path):
    sdf = tmp_path / "gen.sdf"
    write_sdf(sdf, ["CCO", "c1ccccc1", "CCO", "CS(=O)(=O)c1ccc(Cl)cc1"], broken_after=True)
    ref = tmp_path / "train.smi"
    ref.write_text("OCC ethanol\nCCN\n")
    out = tmp_path / "report.json"
    r = geodiff("evaluate", "task=molecules", f"samples={sdf}", f"reference={ref}", f"output={out}")
    assert r.returncode == 0, r.stderr
    assert "molecule stability" in r.stdout and "unreadable" in r.stdout
    rep = json.loads(out.read_text())
    for key in (
        "atom_stability",
        "mol_stability",
        "validity",
        "connected_validity",
        "uniqueness",
        "novelty",
        "num_molecules",
    ):
        assert key in rep
    assert rep["num_molecules"] == 4 and len(rep["unreadable"]) == 1 and rep["bonds"] == "generated"
    assert rep["mol_stability"] == 1.0 and rep["uniqueness"] == 0.75 and rep["unstable_atoms"] == {}
    assert abs(rep["novelty"] - 2 / 3) < 1e-12  # benzene and the sulfone are new, ethanol is not
    r = geodiff("evaluate", f"samples={sdf}", "bonds=edm", "valence_table=edm", f"output={out}")
    assert r.returncode == 0 and "edm" in r.stdout
    # distance-perceived bonds break some valences; the report says which, most frequent first
    bad = json.loads(out.read_text())["unstable_atoms"]
    assert bad and list(bad.values()) == sorted(bad.values(), reverse=True)
    assert f"most unstable atoms       {next(iter(bad))} ({next(iter(bad.values()))})" in r.stdout


def test_evaluate_qm9_npz_against_itself(qm9_npz, tmp_path):
    import numpy as np

    data = np.load(qm9_npz)
    pick = np.random.default_rng(0).choice(len(data["num_atoms"]), 1500, replace=False)
    sub = tmp_path / "qm9_1500.npz"
    np.savez(sub, **{k: data[k][pick] for k in ("num_atoms", "charges", "positions")})
    out = tmp_path / "qm9.json"
    r = geodiff("evaluate", f"samples={sub}", f"reference={qm9_npz}", "reference_limit=1000",
                f"output={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["bonds"] == "edm" and rep["num_molecules"] == 1500
    # EDM's published figures for QM9 itself with this table: 95.2 % molecule, 99.0 % atom stability
    assert 0.93 < rep["mol_stability"] < 0.97 and rep["atom_stability"] > 0.99
    assert rep["distributions"]["bond_length_w1"] < 0.05 and 0 <= rep["novelty"] <= 1


def test_evaluate_errors_are_one_line(tmp_path):
    r = geodiff("evaluate", f"samples={tmp_path / 'missing.sdf'}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not found" in r.stderr
    r = geodiff("evaluate", f"samples={ROOT / 'README.md'}")
    assert r.returncode == 2 and "format" in r.stderr
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    r = geodiff("evaluate", f"samples={empty}")
    assert r.returncode == 2 and "no readable molecules" in r.stderr
    sdf = tmp_path / "x.sdf"
    write_sdf(sdf, ["CCO"])
    r = geodiff("evaluate", f"samples={sdf}", "bonds=magic")
    assert r.returncode == 2 and "bonds" in r.stderr


def test_evaluate_docking_cli(tmp_path):
    data = ROOT.parent / "shared" / "data" / "docking" / "1iep"
    if not (data / "1iep_receptor.pdbqt").is_file():
        import pytest

        pytest.skip("../shared/data/docking/1iep not present")
    sdf = tmp_path / "ligs.sdf"
    sdf.write_text((data / "1iep_ligand.sdf").read_text() + "broken\n\n\n  1  0\nM  END\n$$$$\n")
    out = tmp_path / "dock.json"
    r = geodiff("evaluate", "task=docking", f"samples={sdf}", f"receptor={data / '1iep_receptor.pdbqt'}",
                f"ligand={data / '1iep_ligand.sdf'}", "mode=score_only", f"output={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["summary"]["num_docked"] == 1 and rep["molecules"][0]["score"] < -11
    assert len(rep["unreadable"]) == 1  # score_only writes no pose
    r = geodiff("evaluate", "task=docking", f"samples={sdf}", f"receptor={data / '1iep_receptor.pdbqt'}")
    assert r.returncode == 2 and "needs a box" in r.stderr
