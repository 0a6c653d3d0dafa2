"""geodiff data registration -> train (SE(3) diffusion registration) -> register -> evaluate
task=registration, through the CLI; one-line errors with exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from geodiff.data.pairs import load_pairs
from geodiff.data.pointclouds import read_ply, write_ply

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.dim=16", "model.num_neighbors=8", "model.encoder_layers=1", "model.attention_layers=1",
        "model.heads=2", "data.num_points=96", "data.train_pairs=8", "data.val_pairs=4", "data.batch_size=4",
        "trainer.accelerator=cpu", "trainer.max_epochs=1"]  # fmt: skip


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def test_pairs_train_register_evaluate(tmp_path):
    pairs = tmp_path / "pairs.npz"
    r = geodiff("data", "registration", "procedural=true", "num_pairs=3", "num_points=120", "keep=0.7",
                "noise=0.01", f"output={pairs}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    ps, meta = load_pairs(pairs)
    assert len(ps) == 3 and ps[0].source.shape == (84, 3) and meta["keep"] == 0.7
    out = tmp_path / "run"
    r = geodiff("train", "experiment=registration_tudl_small", "data.models_dir=null",
                "data.procedural_fraction=1.0", *TINY, f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "export" / "registration.json").read_text())
    assert meta["family"] == "registration" and meta["data"]["num_points"] == 96
    assert "val/rot_err_deg" in (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()

    src, tgt = tmp_path / "a.ply", tmp_path / "b.xyz"
    write_ply(src, ps[0].source)
    np.savetxt(tgt, ps[0].target)
    pose, aligned, png = tmp_path / "pose.json", tmp_path / "aligned.ply", tmp_path / "pair.png"
    r = geodiff("register", f"source={src}", f"target={tgt}", f"ckpt={out / 'export'}", f"output={pose}",
                f"aligned={aligned}", f"plot={png}", "num_inference_steps=3")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    h = np.array(json.loads(pose.read_text())["transform"])
    assert h.shape == (4, 4) and np.allclose(h[3], [0, 0, 0, 1])
    np.testing.assert_allclose(read_ply(aligned).points, ps[0].source @ h[:3, :3].T + h[:3, 3], atol=1e-4)
    assert png.stat().st_size > 1000 and "transform" in r.stdout
    r = geodiff("register", f"source={src}", f"target={tgt}", "method=icp_plane", f"output={pose}")
    assert r.returncode == 0, r.stderr[-2000:]

    report = tmp_path / "r.json"
    r = geodiff("evaluate", "task=registration", f"pairs={pairs}", f"ckpt={out / 'export'}",
                "methods=[diffusion,one_shot,icp_point,icp_plane]", "num_inference_steps=2",
                f"output={report}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    assert set(rep["methods"]) == {"diffusion", "one_shot", "icp_point", "icp_plane"}
    for m in rep["methods"].values():
        assert m["summary"]["num_pairs"] == 3 and np.isfinite(m["summary"]["rotation_error_mean_deg"])
    assert "icp_plane" in r.stdout


def test_register_errors_are_one_line(tmp_path):
    good = tmp_path / "good.xyz"
    np.savetxt(good, np.random.default_rng(0).normal(size=(50, 3)))
    (tmp_path / "bad.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty flaot x\nend_header\n"
    )
    np.savetxt(tmp_path / "same.xyz", np.ones((20, 3)))
    np.savetxt(tmp_path / "big.xyz", 1000 * np.random.default_rng(1).normal(size=(50, 3)))
    np.savetxt(tmp_path / "two.xyz", np.zeros((2, 3)))
    (tmp_path / "fam").mkdir()
    (tmp_path / "fam" / "trajectories.json").write_text("{}")
    cases = [
        ([f"source={tmp_path / 'missing.ply'}", f"target={good}"], "no such file"),
        ([f"source={tmp_path / 'bad.ply'}", f"target={good}"], "bad PLY header"),
        ([f"source={tmp_path / 'same.xyz'}", f"target={good}"], "identical"),
        ([f"source={tmp_path / 'two.xyz'}", f"target={good}"], "at least 3"),
        ([f"source={tmp_path / 'big.xyz'}", f"target={good}"], "mismatched units"),
        ([f"source={good}", f"target={good}", f"ckpt={tmp_path / 'fam'}"], "not a registration checkpoint"),
        ([f"source={good}", f"target={good}", "method=teaser"], "method"),
    ]
    for args, msg in cases:
        r = geodiff("register", *args, f"output={tmp_path / 'p.json'}")
        assert r.returncode == 2, (args, r.stderr[-1000:])
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "p.json").exists()
    r = geodiff("evaluate", "task=registration")
    assert r.returncode == 2 and "pairs=PATH" in r.stderr
    r = geodiff("evaluate", "task=registration", f"pairs={good}", "methods=[teaser]")
    assert r.returncode == 2 and "methods" in r.stderr
    r = geodiff("evaluate", "task=registration", f"pairs={good}", "methods=teaser")  # one name, not a list
    assert r.returncode == 2 and "unknown ['teaser']" in r.stderr, r.stderr
    r = geodiff("data", "registration", "num_pairs=0", f"output={tmp_path / 'x.npz'}")
    assert r.returncode == 2 and "num_pairs" in r.stderr


def test_pairs_from_a_modelnet40_h5_folder(tmp_path):
    import h5py

    from geodiff.cli import main

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(4, 256, 3))
    pts /= np.linalg.norm(pts, axis=-1, keepdims=True)  # unit sphere surfaces, ModelNet40-style scale
    with h5py.File(tmp_path / "ply_data_test0.h5", "w") as h:
        h["data"], h["normal"], h["label"] = pts.astype(np.float32), pts.astype(np.float32), np.zeros((4, 1))
    out = tmp_path / "mn.npz"
    assert main(["data", "registration", f"modelnet={tmp_path}", "num_pairs=3", "num_points=128", "keep=0.7",
                 f"output={out}"]) == 0  # fmt: skip
    pairs, meta = load_pairs(out)
    assert len(pairs) == 3 and pairs[0].source.shape == (90, 3) and meta["source"] == "modelnet40:test"
    assert pairs[0].unit == "unitless" and 1.9 < pairs[0].diameter < 2.2


def test_flow_matching_registration_trains_and_registers(tmp_path):
    """experiment=registration_tudl_flow_small: the same surrogate network trained by geodesic flow matching;
    the export names its scheduler, registers from its prior in any number of steps, and refuses the
    reference's diffusion test loop in one line."""
    pairs = tmp_path / "pairs.npz"
    r = geodiff("data", "registration", "procedural=true", "num_pairs=2", "num_points=96", f"output={pairs}")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "flow"
    r = geodiff("train", "experiment=registration_tudl_flow_small", "data.models_dir=null",
                "data.procedural_fraction=1.0", *TINY, f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((out / "export" / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "SE3FlowMatchScheduler"
    report = tmp_path / "r.json"
    r = geodiff("evaluate", "task=registration", f"pairs={pairs}", f"ckpt={out / 'export'}",
                "methods=[diffusion]", "num_inference_steps=4", f"output={report}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(report.read_text())["methods"]["diffusion"]["summary"]
    assert summary["num_pairs"] == 2 and np.isfinite(summary["rotation_error_mean_deg"])
    r = geodiff("evaluate", "task=registration", f"pairs={pairs}", f"ckpt={out / 'export'}",
                "methods=[diffusion]", "inference=reference", f"output={tmp_path / 'bad.json'}")  # fmt: skip
    assert r.returncode == 2 and "flow matching" in r.stderr.strip().splitlines()[-1], r.stderr[-500:]
    assert not (tmp_path / "bad.json").exists()
