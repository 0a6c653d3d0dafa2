"""AutoDock Vina on the real 1iep system (imatinib in c-Abl kinase), ligands prepared with RDKit + meeko."""

from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from geodiff.errors import GeodiffError, first_line
from geodiff.metrics.docking import DockingBox, dock_molecules, dock_one, prepare_ligand, summarise

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "docking" / "1iep"


@pytest.fixture(scope="module")
def system():
    if not (DATA / "1iep_receptor.pdbqt").is_file():
        pytest.skip("../shared/data/docking/1iep not present")
    lig = Chem.MolFromMolFile(str(DATA / "1iep_ligand.sdf"), removeHs=False)
    return lig, DATA / "1iep_receptor.pdbqt", DockingBox.from_vina_config(DATA / "1iep_receptor.box.txt")


def test_boxes(system):
    lig, _, box = system
    assert box.center == (15.19, 53.903, 16.917) and box.size == (20.0, 20.0, 20.0)
    ref = DockingBox.from_ligand(DATA / "1iep_ligand.sdf")
    assert sum((a - b) ** 2 for a, b in zip(ref.center, box.center, strict=True)) ** 0.5 < 2.5
    with pytest.raises(GeodiffError, match="not found"):
        DockingBox.from_ligand(DATA / "nope.sdf")


def test_ligand_preparation_adds_missing_hydrogens():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    text, notes = prepare_ligand(mol)
    assert "ROOT" in text and notes == []
    heavy = Chem.RemoveHs(mol)
    text, notes = prepare_ligand(heavy)
    assert notes == ["added 9 hydrogens"] and "ROOT" in text


def test_score_and_local_optimisation_of_the_crystal_pose_and_failures_reported(system, tmp_path):
    lig, receptor, box = system
    broken = Chem.RWMol(lig)
    broken.GetAtomWithIdx(0).SetFormalCharge(3)  # an impossible carbon: preparation fails, the rest goes on
    res, summ = dock_molecules([lig, broken.GetMol()], receptor, box, mode="score_only", progress=False)
    assert res[0]["ok"] and -14.0 < res[0]["score"] < -11.0  # Vina scores the crystal pose about -12.5
    assert not res[1]["ok"] and res[1]["reason"].startswith("preparation")
    assert summ["num_docked"] == 1 and summ["num_failed"] == 1
    res, _ = dock_molecules([lig], receptor, box, mode="local_only", pose_dir=tmp_path, progress=False)
    assert res[0]["score"] <= -12.5
    pose = Chem.MolFromMolFile(res[0]["pose_file"], removeHs=False)
    assert rdMolAlign.CalcRMS(Chem.RemoveHs(pose), Chem.RemoveHs(lig)) < 1.0
    far = DockingBox((100.0, 100.0, 100.0))
    with pytest.raises(GeodiffError, match="no receptor atom"):
        dock_molecules([lig], receptor, far, progress=False)
    with pytest.raises(GeodiffError, match="not found"):
        dock_molecules([lig], DATA / "missing.pdbqt", box, progress=False)


def test_summary():
    s = summarise([{"ok": True, "score": -5.0}, {"ok": True, "score": -7.0}, {"ok": False}])
    assert s == {"num_molecules": 3, "num_docked": 2, "num_failed": 1, "mean": -6.0, "median": -6.0,
                 "best": -7.0, "best_10_percent_mean": -7.0}  # fmt: skip


def test_receptor_from_pdb_with_meeko(system, tmp_path):
    from geodiff.metrics.docking import prepare_receptor

    lig, receptor, box = system
    made = prepare_receptor(DATA / "1iep_receptorH.pdb", cache_dir=tmp_path)
    assert made.parent == tmp_path
    atoms = lambda p: sum(line.startswith("ATOM") for line in Path(p).read_text().splitlines())  # noqa: E731
    assert atoms(made) == atoms(receptor)
    a, _ = dock_molecules([lig], made, box, mode="score_only", progress=False)
    b, _ = dock_molecules([lig], receptor, box, mode="score_only", progress=False)
    assert abs(a[0]["score"] - b[0]["score"]) < 0.5


def test_a_crashing_or_hanging_worker_is_reported_and_the_rest_finish():
    from tqdm import tqdm

    from geodiff.metrics.docking import _run_jobs
    from geodiff.testing.workers import fake_dock

    jobs = [{"index": i, "name": f"m{i}"} for i in range(5)]
    jobs[2]["crash"] = True
    jobs[4]["sleep"] = 30
    res = _run_jobs(jobs, 2, timeout=8.0, bar=tqdm(disable=True), fn=fake_dock)
    assert [r["index"] for r in res] == [0, 1, 2, 3, 4]
    assert [r["ok"] for r in res] == [True, True, False, True, False]
    assert "crashed" in res[2]["reason"] and "timeout" in res[4]["reason"]
    assert res[3]["score"] == -3.0


def test_posebusters_checks_pass_the_crystal_pose_and_catch_a_clash(tmp_path):
    import importlib.resources

    import numpy as np

    from geodiff.metrics.docking import posebusters_checks

    base = Path(str(importlib.resources.files("posebusters"))) / "datasets" / "pdb" / "1s3v"
    protein, ligand = base / "1s3v_protein_one_lig_removed.pdb", base / "1s3v_ligand.sdf"
    mol = Chem.MolFromMolFile(str(ligand), removeHs=False)
    # move the ligand onto the nearest protein atom: a clash PoseBusters must flag
    prot = Chem.MolFromPDBFile(str(protein), sanitize=False)
    xyz = mol.GetConformer().GetPositions()
    p = prot.GetConformer().GetPositions()
    d = np.linalg.norm(p - xyz.mean(0), axis=1)
    shift = p[np.argmin(np.where(d < 6, np.inf, d))]  # the nearest protein atom outside the pocket
    conf = mol.GetConformer()
    for i, q in enumerate(xyz - xyz.mean(0) + shift):
        conf.SetAtomPosition(i, q.tolist())
    Chem.MolToMolFile(mol, str(tmp_path / "clash.sdf"))
    res = posebusters_checks([ligand, None, tmp_path / "clash.sdf"], protein)
    assert res[0]["pb_valid"] and res[0]["passed"] == res[0]["checks"] > 10
    assert res[1] is None
    assert not res[2]["pb_valid"] and any("protein" in f for f in res[2]["failed"])
    with pytest.raises(GeodiffError, match="PDB"):
        posebusters_checks([ligand], tmp_path / "r.pdbqt")


@pytest.mark.parametrize(
    ("message", "shown"), [("box too small\nsecond line", "box too small"), (" \n ", "(no message)")]
)
def test_a_vina_failure_is_reported_by_its_first_line_even_a_blank_one(monkeypatch, message, shown):
    import vina

    class FailingVina:  # Vina itself raising, as it does for a ligand it cannot place
        def __init__(self, **kwargs):
            raise RuntimeError(message)

    monkeypatch.setattr(vina, "Vina", FailingVina)
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    job = {"index": 3, "name": "ethanol", "molblock": Chem.MolToMolBlock(mol), "receptor": "r.pdbqt",
           "center": (0.0, 0.0, 0.0), "size": (20.0, 20.0, 20.0), "mode": "score_only",
           "exhaustiveness": 8, "num_poses": 1, "seed": 0, "cpu": 1}  # fmt: skip
    out = dock_one(job)
    assert out["index"] == 3 and not out["ok"] and out["reason"] == f"vina: RuntimeError: {shown}"


def test_first_line_of_an_error_message():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(ValueError("  \n\t")) == "ValueError"
    assert first_line(KeyError(), default="") == ""


def test_a_timeout_in_the_first_round_is_reported_and_the_others_docked():
    """The issue's repro: a molecule times out while the pool is full (not in the one-by-one retry); stopping
    the pool twice must not raise, and every other molecule still gets its result."""
    from tqdm import tqdm

    from geodiff.metrics.docking import _run_jobs
    from geodiff.testing.workers import fake_dock

    jobs = [{"index": i, "name": f"m{i}"} for i in range(4)]
    jobs[0]["sleep"] = 30
    res = _run_jobs(jobs, 2, timeout=4.0, bar=tqdm(disable=True), fn=fake_dock)
    assert [r["ok"] for r in res] == [False, True, True, True] and "timeout" in res[0]["reason"]


@pytest.mark.slow  # two full docking runs (37 s): make test-slow
def test_docking_with_the_defaults_is_reproducible_and_reruns_replace_their_poses(system, tmp_path):
    lig, receptor, box = system
    second = Chem.Mol(lig)
    runs = []
    for _ in range(2):
        res, _ = dock_molecules([lig, second], receptor, box, exhaustiveness=1, num_poses=1, processes=2,
                                pose_dir=tmp_path, progress=False)  # fmt: skip
        runs.append([(r["score"], Path(r["pose_file"]).read_text()) for r in res])
    assert runs[0] == runs[1]  # same default seed: the same scores and poses
    dock_molecules([lig], receptor, box, exhaustiveness=1, num_poses=1, pose_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.sdf")) == ["00000.sdf"]  # no stale pose of the last run
    with pytest.raises(GeodiffError, match="seed: must be a positive integer"):
        dock_molecules([lig], receptor, box, seed=0, progress=False)


def test_receptor_preparation_caches_away_from_the_input(tmp_path, monkeypatch):
    from geodiff.metrics.docking import prepare_receptor

    if not (DATA / "1iep_receptorH.pdb").is_file():
        pytest.skip("../shared/data/docking/1iep not present")
    monkeypatch.setenv("GEODIFF_CACHE", str(tmp_path / "cache"))
    before = sorted(p.name for p in DATA.iterdir())
    made = prepare_receptor(DATA / "1iep_receptorH.pdb")
    assert made.parent == tmp_path / "cache" / "receptors" and made.is_file()
    assert sorted(p.name for p in DATA.iterdir()) == before
    assert prepare_receptor(DATA / "1iep_receptorH.pdb") == made  # cached
