"""``geodiff data molecules`` writes a cache from a multi-conformer SDF, and training reads it in data-loader
worker processes (its own molecule-level train / val splits), exports, and the export samples."""

import subprocess
import sys
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

ROOT = Path(__file__).resolve().parents[2]
SMILES = ["CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC(=O)Nc1c(C)cccc1C", "OC(=O)c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
          "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "CC(=O)Oc1ccccc1C(=O)O"]  # fmt: skip


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def test_cache_then_train_with_workers_then_sample(tmp_path):
    writer = Chem.SDWriter(str(tmp_path / "mols.sdf"))
    for k, s in enumerate(SMILES):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        for cid in AllChem.EmbedMultipleConfs(mol, numConfs=2, randomSeed=k):
            writer.write(mol, confId=cid)
    writer.close()
    r = geodiff("data", "molecules", f"input={tmp_path / 'mols.sdf'}", f"output={tmp_path / 'cache'}",
                "conformers=2", "fractions=[0.5,0.5,0.0]")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cache" in r.stdout and "train" in r.stdout and (tmp_path / "cache" / "index.json").is_file()
    out = tmp_path / "run"
    r = geodiff("train", "experiment=geom_eqgat_small", f"data.path={tmp_path / 'cache'}",
                "data.num_workers=2",
                "data.batch_size=2", "model.s_dim=16", "model.v_dim=4", "model.e_dim=4", "model.num_layers=1",
                "scheduler.pos.num_train_timesteps=10", "trainer.max_steps=3", "trainer.accelerator=cpu",
                f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    s = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", "num_inference_steps=3",
                f"output={tmp_path / 's.sdf'}")  # fmt: skip
    assert s.returncode == 0 and "sampled 2 molecules" in s.stdout, s.stderr[-2000:]
    bad = geodiff("data", "molecules", f"input={tmp_path / 'nothing.sdf'}", f"output={tmp_path / 'c2'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "geodiff data: error: input:"
    )


def test_adaptive_batches_under_ddp(qm9_npz, tmp_path):
    """data.max_atoms: batches by atom budget, split between two processes by the batch sampler itself."""
    out = tmp_path / "run"
    r = geodiff("train", "experiment=qm9_eqgat_small", f"data.path={qm9_npz}", "data.limit=40",
                f"data.cache_dir={tmp_path / 'cache'}", "data.max_atoms=120", "model.s_dim=16",
                "model.v_dim=4", "model.e_dim=4", "model.num_layers=1",
                "scheduler.pos.num_train_timesteps=10",
                "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2",
                "trainer.strategy=ddp", "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false",
                f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "adaptive: at most 120 atoms" in (out / "export" / "molecules.json").read_text()
    bad = geodiff("train", "experiment=qm9_eqgat_small", f"data.path={qm9_npz}", "data.limit=40",
                  f"data.cache_dir={tmp_path / 'cache'}", "data.max_atoms=5", "trainer.accelerator=cpu",
                  f"output_dir={tmp_path / 'bad'}")  # fmt: skip
    assert bad.returncode == 2 and "data.max_atoms: 5 is smaller than the largest molecule" in bad.stderr
