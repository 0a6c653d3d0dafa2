"""geodiff train -> geodiff sample on real QM9 molecules, through the CLI (tiny model, one epoch)."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem

from geodiff.data.datamodules import MoleculeDataModule
from geodiff.data.structures import write_sdf

ROOT = Path(__file__).resolve().parents[2]


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def test_train_then_sample(qm9_npz, tmp_path):
    out = tmp_path / "run"
    r = geodiff("train", "experiment=qm9_eqgat_small", f"data.path={qm9_npz}", "data.limit=48",
                f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=16", "model.s_dim=16",
                "model.v_dim=4", "model.e_dim=4", "model.num_layers=1",
                "scheduler.pos.num_train_timesteps=20", "trainer.max_epochs=1",
                "module.val_sample_every_n_epochs=1", "module.val_num_samples=3",
                "module.val_sampling_steps=3", "module.weight_bonds=1.5",
                "trainer.accelerator=cpu", f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "export" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    metrics = (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "val/connected_validity" in metrics  # validation sampled molecules and scored them
    assert "val/mol_stability" in metrics and "val/atom_stability" in metrics
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # eval/loss_by_t.py: its uniform row on the validation split is the run's val/loss (same batches, seeds,
    # and the loss weights of the run, module.weight_bonds=1.5, read from the export's training record)
    rows = list(csv.DictReader(metrics.splitlines()))
    val_loss = [float(r["val/loss"]) for r in rows if r.get("val/loss")][-1]
    script = [sys.executable, str(ROOT / "eval" / "loss_by_t.py"), "--ckpt", str(out / "export"),
              "--data", str(qm9_npz), "--limit", "48", "--val-batch-size", "16", "--passes", "1"]  # fmt: skip
    js, png = tmp_path / "loss.json", tmp_path / "loss.png"
    r = subprocess.run([*script, "--t", "0", "19", "--json", str(js), "--plot", str(png)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(js.read_text())["checkpoints"][str(out / "export")]
    assert result["val"]["uniform"]["loss"] == pytest.approx(val_loss, rel=1e-5)
    weights = {"pos": 3.0, "atoms": 0.4, "bonds": 1.5, "charges": 1.0}
    assert json.loads(js.read_text())["weights"] == {str(out / "export"): weights}
    assert list(result["train"]) == ["t=0", "t=19", "uniform"]
    for split in ("val", "train"):  # more noise, larger error in every term but the near-constant charges
        low, high = result[split]["t=0"], result[split]["t=19"]
        assert all(high[k] > low[k] for k in ("pos", "atoms", "bonds")), (split, low, high)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = subprocess.run([*script, "--t", "20"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("loss_by_t: error: --t")
    r = subprocess.run([*script, "--weights", "3", "-1", "2", "1"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 2 and "loss_by_t: error: --weights must be >= 0" in r.stderr
    record = json.loads((out / "export" / "molecules.json").read_text())["training"]
    assert record["bonds"] == "Kekule form (data.kekulize=true)" and record["batch_size"] == 16
    assert record["loss_weights"] == weights
    sdf = tmp_path / "mols.sdf"
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=5", "sampler=ddim", "num_inference_steps=4",
                "last_step=argmax", f"output={sdf}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sampled 5 molecules" in r.stdout and sdf.with_suffix(".png").is_file()
    assert len([m for m in Chem.SDMolSupplier(str(sdf), removeHs=False, sanitize=False)]) == 5
    assert "(against the training molecules)" in r.stdout
    # novelty: the export carries its training molecules' hashed SMILES; they score 0 % novel against it
    assert (out / "export" / "training_smiles.npz").is_file()
    dm = MoleculeDataModule(str(qm9_npz), cache_dir=str(tmp_path / "cache"), limit=48)
    dm.prepare()
    train_sdf = write_sdf(list(dm.training_molecules()), tmp_path / "train.sdf")
    r = geodiff("evaluate", f"samples={train_sdf}", f"training_set={out / 'export'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"^novelty\s+0\.00 %$", r.stdout, re.M), r.stdout
    old = tmp_path / "old_export"  # an export made before the SMILES were stored: novelty unavailable
    shutil.copytree(out / "export", old)
    (old / "training_smiles.npz").unlink()
    r = geodiff("evaluate", f"samples={train_sdf}", f"training_set={old}")
    assert r.returncode == 0 and re.search(r"^novelty\s+unavailable", r.stdout, re.M), r.stdout
    r = geodiff("sample", f"ckpt={old}", "num_samples=2", "sampler=ddim", "num_inference_steps=2",
                f"output={tmp_path / 'old.sdf'}")  # fmt: skip
    assert r.returncode == 0 and "novelty unavailable" in r.stdout, r.stdout
    # resume from the Lightning checkpoint for one more epoch
    r = geodiff("train", f"data.path={qm9_npz}", "data.limit=48", f"data.cache_dir={tmp_path / 'cache'}",
                "model.s_dim=16", "model.v_dim=4", "model.e_dim=4", "model.num_layers=1",
                "scheduler.pos.num_train_timesteps=20", "trainer.max_epochs=2", "trainer.accelerator=cpu",
                f"output_dir={out}", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "ckpt=/nonexistent/model", "num_samples=3"], "checkpoint not found: /nonexistent/model"),
        (["sample", "num_samples=0"], "num_samples"),
        (["train", "data.path=/nonexistent.npz", "trainer.max_epochs=1"], "not found"),
    ],
)
def test_molecule_cli_errors(args, message):
    r = geodiff(*args)
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr and message in r.stderr.strip().splitlines()[-1]


def test_train_on_an_sdf_and_vocabulary_mismatch(tmp_path):
    from rdkit.Chem import AllChem

    sdf = tmp_path / "drugs.sdf"
    w = Chem.SDWriter(str(sdf))
    for k, smi in enumerate(["CC(=O)Oc1ccccc1C(=O)O", "Clc1ccc(cc1)S(N)(=O)=O", "CCSCC", "OCCCl"] * 4):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        w.write(mol)
    w.close()
    common = [f"data.path={sdf}", "data.batch_size=8", "model.s_dim=16", "model.v_dim=4", "model.e_dim=4",
              "model.num_layers=1", "scheduler.pos.num_train_timesteps=10", "trainer.max_epochs=1",
              "trainer.accelerator=cpu", f"output_dir={tmp_path / 'run'}"]  # fmt: skip
    r = geodiff("train", *common)  # the default model has QM9's 5 atom types; the SDF has H C N O S Cl
    assert r.returncode == 2, r.stderr[-1500:]
    assert "Traceback" not in r.stderr and "set model.num_atom_types=6" in r.stderr.strip().splitlines()[-1]
    r = geodiff("train", *common, "model.num_atom_types=6")
    assert r.returncode == 0, r.stderr[-1500:]
    r = geodiff("train", "experiment=geom_eqgat_small", *common)  # fixed 16-element GEOM vocabulary
    assert r.returncode == 0, r.stderr[-1500:]
    meta = (tmp_path / "run" / "export" / "molecules.json").read_text()
    assert '"Bi"' in meta and '"Cl"' in meta
    # a second stage warm-started from that export records both stages and the total step count
    first = json.loads(meta)["training"]
    assert "geodiff train experiment=geom_eqgat_small" in first["command"] and "stages" not in first
    again = [a for a in common if not a.startswith("output_dir=")]
    warm = f"module.init_from={tmp_path / 'run' / 'export'}"
    r = geodiff("train", "experiment=geom_eqgat_small", *again, warm, f"output_dir={tmp_path / 'run2'}")
    assert r.returncode == 0, r.stderr[-1500:]
    rec = json.loads((tmp_path / "run2" / "export" / "molecules.json").read_text())["training"]
    assert [s["command"] for s in rec["stages"]][0] == first["command"] and len(rec["stages"]) == 2
    assert rec["global_step"] == 2 * first["global_step"] > 0
    assert rec["stages"][1]["init_from"] == str(tmp_path / "run" / "export")


def test_reference_variant_trains_exports_and_samples(qm9_npz, tmp_path):
    """experiment=qm9_eqgat_reference_small: the reference network and loss normalisation, through the CLI."""
    out = tmp_path / "ref"
    r = geodiff("train", "experiment=qm9_eqgat_reference_small", f"data.path={qm9_npz}", "data.limit=32",
                f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=16", "model.s_dim=16",
                "model.v_dim=4", "model.e_dim=4", "model.num_layers=2",
                "scheduler.pos.num_train_timesteps=20", "trainer.max_epochs=1",
                "module.val_sample_every_n_epochs=0", "trainer.accelerator=cpu",
                f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((out / "export" / "model" / "config.json").read_text())
    assert config["_class_name"] == "EQGATReferenceDenoiser"
    record = json.loads((out / "export" / "molecules.json").read_text())["training"]
    assert record["loss_normalisation"] == "reference"
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", "sampler=ddim", "num_inference_steps=2",
                f"output={tmp_path / 'ref.sdf'}")  # fmt: skip
    assert r.returncode == 0 and "sampled 2 molecules" in r.stdout, r.stderr[-2000:]


def test_flow_matching_trains_exports_and_samples(qm9_npz, tmp_path):
    """experiment=qm9_eqgat_flow_small: the same denoiser trained by flow matching; the export records its
    schedulers and samples with any number of steps; diffusion samplers are refused in one line."""
    out = tmp_path / "flow"
    r = geodiff("train", "experiment=qm9_eqgat_flow_small", f"data.path={qm9_npz}", "data.limit=32",
                f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=16", "model.s_dim=16",
                "model.v_dim=4", "model.e_dim=4", "model.num_layers=1", "model.self_condition=false",
                "module.ot_alignment=true", "trainer.max_epochs=1", "module.val_sample_every_n_epochs=1",
                "module.val_num_samples=2",
                "module.val_sampling_steps=3", "trainer.accelerator=cpu", f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "val/mol_stability" in (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    record = json.loads((out / "export" / "molecules.json").read_text())["training"]
    assert record["ot_alignment"] is True
    for part, cls in (("pos", "E3FlowMatchScheduler"), ("bonds", "CategoricalFlowMatchScheduler")):
        config = json.loads((out / "export" / f"scheduler_{part}" / "scheduler_config.json").read_text())
        assert config["_class_name"] == cls
    for steps in ("7", "1"):
        r = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", f"num_inference_steps={steps}",
                    f"output={tmp_path / ('flow' + steps + '.sdf')}")  # fmt: skip
        assert r.returncode == 0 and "sampled 2 molecules" in r.stdout, r.stderr[-2000:]
        assert "flow, " in r.stdout
    # the sampling grid's shift for one call (all four parts on one grid); a bad one is one line
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", "num_inference_steps=5",
                "time_shift=0.5", f"output={tmp_path / 'shifted.sdf'}")  # fmt: skip
    assert r.returncode == 0 and "flow (time_shift 0.5), 5 steps" in r.stdout, r.stderr[-2000:]
    r = geodiff(
        "sample", f"ckpt={out / 'export'}", "num_samples=2", "time_shift=0", f"output={tmp_path / 'z.sdf'}"
    )
    assert r.returncode == 2 and "time_shift: must be > 0" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "z.sdf").exists()
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", "sampler=ddpm", "num_inference_steps=3",
                f"output={tmp_path / 'bad.sdf'}")  # fmt: skip
    assert r.returncode == 2 and "flow-matching export" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad.sdf").exists()
    # the per-call measurement's script, with a sampler setting changed for one of two labels of the export
    export = out / "export"
    script = [sys.executable, str(ROOT / "eval" / "steps_vs_quality.py"), "--model", f"plain={export}",
              "--model", f"knobs={export}", "--set", "knobs:time_shift=3", "--set", "knobs:eta=1.5",
              "--set", "knobs:last_step=argmax", "--steps", "2", "--n", "2",
              "--json", str(tmp_path / "s.json")]  # fmt: skip
    r = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["settings"] == {"knobs": {"time_shift": 3, "eta": 1.5, "last_step": "argmax"}}
    assert res["models"]["plain"]["2"]["n"] == res["models"]["knobs"]["2"]["n"] == 2
    bad = [*script[:2], "--model", f"x={export}", "--set", "x:pos.nope=1", "--json", str(tmp_path / "t.json")]
    r = subprocess.run(bad, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode != 0 and "no scheduler of this model has 'nope'" in r.stderr
    r = subprocess.run([*bad[:-3], "x:pos.time_shift=2", *bad[-2:]], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)  # fmt: skip
    assert r.returncode != 0 and "another time grid than the positions'" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "t.json").exists()
