"""The shipped QM9 model (checkpoints/qm9_eqgat_small) loads without training data and samples."""

import json
import subprocess
import sys
from pathlib import Path

from rdkit import Chem

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "qm9_eqgat_small"


def test_shipped_model_is_safetensors_with_its_record():
    assert (SHIPPED / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert not [p for p in SHIPPED.rglob("*") if p.suffix in (".bin", ".ckpt", ".pt", ".pkl")]
    meta = json.loads((SHIPPED / "molecules.json").read_text())
    assert meta["family"] == "molecules" and "command" in meta["training"]
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 20 * 2**20


def test_geodiff_sample_works_out_of_the_box(tmp_path):
    out = tmp_path / "m.sdf"
    r = subprocess.run(
        [sys.executable, "-m", "geodiff.cli", "sample", "num_samples=4", "sampler=ddim",
         "num_inference_steps=10", f"output={out}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,  # not the repo root: needs no data
        env={"GEODIFF_CONFIG_DIR": str(ROOT / "configs"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert len(list(Chem.SDMolSupplier(str(out), removeHs=False, sanitize=False))) == 4
