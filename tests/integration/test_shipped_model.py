"""The shipped QM9 model (checkpoints/qm9_eqgat_small) loads without training data and samples."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_eval_molecules_scores_samples_both_ways(tmp_path):
    """eval/eval_molecules.py: generated-bond metrics and EDM's protocol on the same samples; the latter is
    what `geodiff evaluate bonds=edm valence_table=edm` gives on the SDF it writes."""
    from geodiff.metrics.evaluate import evaluate_molecule_file

    out, sdf = tmp_path / "r.json", tmp_path / "m.sdf"
    r = subprocess.run(
        [sys.executable, str(ROOT / "eval" / "eval_molecules.py"), "--ckpt", str(SHIPPED), "--n", "8",
         "--sampler", "ddim", "--steps", "20", "--batch-size", "8", "--json", str(out), "--sdf", str(sdf)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert "EDM's protocol" in r.stdout and "EQGAT-diff's rule" in r.stdout
    result = json.loads(out.read_text())
    assert result["num_molecules"] == 8 and result["valence_table"] == "strict"
    # EQGAT-diff's rule is at least as lenient as strict on the same bonds (it allows more valences)
    assert result["eqgat_rule"]["atom_stability"] >= result["atom_stability"]
    edm = result["edm_protocol"]
    assert set(edm) == {"mol_stability", "atom_stability", "validity", "connected_validity", "unstable_atoms"}
    assert all(0.0 <= edm[k] <= 1.0 for k in ("mol_stability", "atom_stability", "validity"))
    assert edm["atom_stability"] > 0.5
    again = evaluate_molecule_file(sdf, bonds="edm", valence_table="edm")
    assert again["num_molecules"] == 8 and again["bonds"] == "edm"
    for k in ("mol_stability", "atom_stability", "validity", "connected_validity"):
        assert again[k] == pytest.approx(edm[k]), k


QM9 = ROOT.parent / "shared" / "data" / "qm9" / "test.npz"


def test_one_step_recovery_of_real_molecules_by_the_shipped_model(tmp_path):
    """eval/denoise_from_t.py: Kekule QM9 is all stable (the ceiling row); from little noise the shipped
    model gives the molecules back; a timestep outside 0..T-1 is a one-line error."""
    if not QM9.is_file():
        pytest.skip("../shared/data/qm9/test.npz not present")
    script = [sys.executable, str(ROOT / "eval" / "denoise_from_t.py"), "--ckpt", str(SHIPPED),
              "--data", str(QM9), "--limit", "200"]  # fmt: skip
    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    r = subprocess.run([*script, "--n", "10", "--t", "0", "20", "--json", str(out), "--plot", str(png)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    result = json.loads(out.read_text())
    data, rows = result["data_row"], result["checkpoints"][str(SHIPPED)]
    assert list(rows) == ["t=0", "t=20"] and result["num_molecules"] == 10
    assert data["mol_stability"] == 1.0 and data["bonds_recovered"] == 1.0 and data["pos_rmse"] == 0.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows["t=0"]["bonds_recovered"] >= 0.9 and rows["t=0"]["atoms_recovered"] == 1.0
    assert rows["t=0"]["pos_rmse"] < 0.2 and rows["t=0"]["pos_rmse"] <= rows["t=20"]["pos_rmse"] + 0.05
    r = subprocess.run([*script, "--t", "500"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("denoise_from_t: error: --t")


TRAJ = ROOT / "checkpoints" / "nbody_charged_geotdm_small"


@pytest.mark.parametrize("kind", ["charged", "springs"])
def test_shipped_geotdm_model_forecasts_better_than_constant_velocity(kind):
    """The shipped charged-particle and springs models load without their training data and, on systems
    they never saw (a fresh seed), beat the constant-velocity baseline."""
    import torch

    from geodiff.data.datamodules import systems_for_sampling
    from geodiff.data.trajectories import collate_trajectories
    from geodiff.metrics.trajectories import constant_velocity, displacement_errors
    from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

    ckpt = ROOT / "checkpoints" / f"nbody_{kind}_geotdm_small"
    meta = json.loads((ckpt / "trajectories.json").read_text())
    assert meta["family"] == "trajectories" and "command" in meta["training"] and meta["data"]["kind"] == kind
    assert not [p for p in ckpt.rglob("*") if p.suffix in (".bin", ".ckpt", ".pt", ".pkl")]
    pipe = TrajectoryDiffusionPipeline.from_pretrained(ckpt)
    ds = systems_for_sampling(pipe.data_info, None, num_systems=16, seed=4242)
    b = collate_trajectories(ds.samples)
    torch.set_num_threads(2)
    pred = pipe(b, num_samples=2, num_inference_steps=50, seed=0, progress=False).trajectories
    truth = b.x[:, 10:]
    ours = displacement_errors(pred, truth)
    cv = displacement_errors(constant_velocity(b.x[:, :10], 20), truth)
    assert ours["ade"] < cv["ade"] and ours["fde"] < cv["fde"], (ours, cv)


REG = ROOT / "checkpoints" / "registration_tudl_small"


def test_shipped_registration_model_registers_rotated_objects_better_than_identity(tmp_path):
    """The default `geodiff register` checkpoint loads without data and aligns fresh procedural pairs at 45
    degrees (shapes and seeds it never saw) far better than doing nothing."""
    import numpy as np

    from geodiff.data.pairs import PairConfig, benchmark_pairs
    from geodiff.data.shapes import procedural_mesh
    from geodiff.metrics.pose import rotation_error_deg
    from geodiff.pipelines.registration import RegistrationPipeline

    assert (REG / "model" / "diffusion_pytorch_model.safetensors").is_file()
    meta = json.loads((REG / "registration.json").read_text())
    assert meta["family"] == "registration" and "command" in meta["training"]
    pipe = RegistrationPipeline.from_pretrained(REG)
    rng = np.random.default_rng(20261123)
    objs = [{"mesh": procedural_mesh(rng), "diameter": 2.0} for _ in range(8)]
    pairs = benchmark_pairs(objs, PairConfig(num_points=512, max_angle=45), 8, seed=99)
    src, tgt = [p.source for p in pairs], [p.target for p in pairs]
    est = pipe(src, tgt, 5, progress=False).poses
    true = np.stack([p.pose for p in pairs])
    before = rotation_error_deg(np.broadcast_to(np.eye(4), true.shape), true)
    after = rotation_error_deg(est, true)
    assert np.median(after) < 10 and np.median(after) < 0.25 * np.median(before), (before, after)
    # the default clean-step refinement passes (3) sharpen the plain reverse process
    raw = rotation_error_deg(pipe(src, tgt, 5, progress=False, refine_steps=0).poses, true)
    assert np.median(after) < np.median(raw), (raw, after)


def test_loading_any_shipped_checkpoint_executes_no_pickle(monkeypatch, tmp_path):
    """safetensors + JSON only: loading never reaches pickle / torch.load, and needs no training data
    (run from an empty working directory, so relative data paths cannot resolve)."""
    import pickle

    import torch

    from geodiff.pipelines.molecules import MoleculeDiffusionPipeline
    from geodiff.pipelines.registration import RegistrationPipeline
    from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load reached pickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.chdir(tmp_path)
    MoleculeDiffusionPipeline.from_pretrained(SHIPPED)
    TrajectoryDiffusionPipeline.from_pretrained(TRAJ)
    TrajectoryDiffusionPipeline.from_pretrained(ROOT / "checkpoints" / "nbody_springs_geotdm_small")
    for scene in ("hotel", "eth"):
        TrajectoryDiffusionPipeline.from_pretrained(ROOT / "checkpoints" / f"eth_ucy_{scene}_geotdm_small")
    RegistrationPipeline.from_pretrained(REG)
