"""Re-docking imatinib into 1iep with full Vina search (exhaustiveness 8): score and pose vs the crystal."""

from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from geodiff.metrics.docking import DockingBox, dock_molecules

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "docking" / "1iep"


@pytest.mark.slow
def test_redock_1iep(tmp_path):
    if not (DATA / "1iep_receptor.pdbqt").is_file():
        pytest.skip("../shared/data/docking/1iep not present")
    lig = Chem.MolFromMolFile(str(DATA / "1iep_ligand.sdf"), removeHs=False)
    box = DockingBox.from_vina_config(DATA / "1iep_receptor.box.txt")
    res, _ = dock_molecules([lig], DATA / "1iep_receptor.pdbqt", box, mode="dock", exhaustiveness=8, seed=1,
                            pose_dir=tmp_path, progress=False)  # fmt: skip
    assert -14.5 < res[0]["score"] < -12.0  # AutoDock Vina's tutorial: about -13 kcal/mol for the top pose
    pose = Chem.MolFromMolFile(res[0]["pose_file"], removeHs=False)
    assert rdMolAlign.CalcRMS(Chem.RemoveHs(pose), Chem.RemoveHs(lig)) < 2.0
