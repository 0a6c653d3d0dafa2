"""geodiff data nbody -> train (GeoTDM) -> sample -> evaluate task=trajectories, through the CLI; errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.hidden=8", "model.num_layers=1", "model.heads=2", "model.prior_layers=1", "model.time_dim=8",
        "scheduler.num_train_timesteps=20", "trainer.accelerator=cpu", "trainer.max_epochs=1"]  # fmt: skip


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def test_simulate_train_sample_evaluate(tmp_path):
    data = tmp_path / "nb"
    r = geodiff("data", "nbody", "kind=charged", "num_train=16", "num_val=4", "num_test=4", f"output={data}")
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(data / "train.npz") as z:
        assert z["loc"].shape == (16, 49, 5, 3) and str(z["kind"]) == "charged"
    out = tmp_path / "run"
    r = geodiff("train", "experiment=nbody_charged_geotdm_small", f"data.path={data}", "data.batch_size=8",
                "module.val_sample_every_n_epochs=1", "module.val_sampling_steps=3", *TINY,
                "module.lr_schedule=cosine", "module.lr_min_ratio=0.1", f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "export" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    # the cosine schedule ran over the whole run (2 steps of 8): the rate ends at lr * lr_min_ratio
    (ckpt,) = (out / "checkpoints").glob("last*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.1 * 5e-4)
    meta = json.loads((out / "export" / "trajectories.json").read_text())
    assert meta["family"] == "trajectories" and meta["data"]["kind"] == "charged"
    run = meta["training"]  # the command line, hardware and time of the run go with the model
    assert "geodiff train experiment=nbody_charged_geotdm_small data.path=" in run["command"]
    assert "CPU" in run["hardware"] and run["wall_time"].endswith("min") and run["batch_size"] == 8
    assert run["lr_schedule"] == "cosine from 0.0005 to 5e-05 over 2 steps"
    assert "val/ade" in (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    png, js = tmp_path / "curves.png", tmp_path / "c.json"
    r = geodiff("curves", f"runs={out}", f"output={png}", f"summary={js}")
    assert r.returncode == 0, r.stderr[-2000:]
    curves = json.loads(js.read_text())["run"]
    assert {"val/loss", "val/ade", "val/fde"} <= set(curves) and curves["val/ade"]["last"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    npz = tmp_path / "traj.npz"
    r = geodiff("sample", f"ckpt={out / 'export'}", f"data={data}", "num_systems=3", "samples_per_system=2",
                "num_inference_steps=5", f"output={npz}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "forecast 3 systems x 2 samples" in r.stdout and npz.with_suffix(".png").is_file()
    with np.load(npz) as z:
        assert z["pred"].shape == (2, 15, 20, 3) and z["truth"].shape == (15, 20, 3)
    report = tmp_path / "r.json"
    r = geodiff("evaluate", "task=trajectories", f"samples={npz}", f"output={report}")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(report.read_text())
    for key in ("ade", "fde", "ade_min", "fde_min", "ade_avg", "fde_avg"):
        assert np.isfinite(rep[key])
    assert rep["k"] == 2 and rep["ade_min"] <= rep["ade_avg"] and "constant_velocity" in rep["baselines"]
    # fresh simulated systems when no data is given (the demo's path)
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_systems=2", "samples_per_system=1",
                "num_inference_steps=3", f"output={tmp_path / 'fresh.npz'}")  # fmt: skip
    assert r.returncode == 0 and "freshly simulated" in r.stdout, r.stderr[-2000:]


def test_unconditional_generation_and_marginal_score(tmp_path):
    data = tmp_path / "nb"
    assert (
        geodiff("data", "nbody", "num_train=8", "num_val=2", "num_test=3", f"output={data}").returncode == 0
    )
    out = tmp_path / "run"
    r = geodiff("train", "experiment=nbody_charged_geotdm_uncond_small", f"data.path={data}", *TINY,
                f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    npz = tmp_path / "gen.npz"
    r = geodiff("sample", f"ckpt={out / 'export'}", f"data={data}", "num_systems=3", "samples_per_system=1",
                "num_inference_steps=4", f"output={npz}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(npz) as z:
        pred, batch = z["pred"][0], z["batch"]
    for s in range(3):  # one zero centre of mass over all nodes and frames of every system
        np.testing.assert_allclose(pred[batch == s].mean((0, 1)), 0.0, atol=1e-4)
    r = geodiff("evaluate", "task=trajectories", f"samples={npz}", f"reference={data / 'test.npz'}")
    assert r.returncode == 0 and "marginal score" in r.stdout, r.stderr[-2000:]


@pytest.mark.skipif(not (SHARED_DATA / "eth_ucy").is_dir(), reason="../shared/data/eth_ucy not present")
def test_eth_ucy_trains_in_2d(tmp_path):
    out = tmp_path / "eth"
    r = geodiff("train", "experiment=eth_ucy_geotdm_small", f"data.path={SHARED_DATA / 'eth_ucy'}",
                "data.scene=hotel", "data.limit=16", "data.val_limit=4", "data.batch_size=8", *TINY,
                f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_systems=2", "samples_per_system=3",
                "num_inference_steps=3", f"output={tmp_path / 'e.npz'}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(tmp_path / "e.npz") as z:
        assert z["pred"].shape[0] == 3 and z["pred"].shape[2:] == (12, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "nbody", "kind=magnets", "num_train=2"], "unknown N-body system"),
        (["data", "sdf"], "usage: geodiff data nbody"),
        (["evaluate", "task=trajectories", "samples=/nonexistent.npz"], "file not found"),
        (["train", "experiment=eth_ucy_geotdm_small", "data.scene=paris"], "unknown ETH-UCY scene"),
        (["train", "experiment=md17_geotdm_small", "data.path=/nonexistent.npz"], "file not found"),
        (["train", "experiment=nbody_charged_geotdm_small", "module.lr_schedule=linear"], "unknown schedule"),
        (["train", "experiment=qm9_eqgat_small", "module.lr_min_ratio=2"], "must lie in [0, 1]"),
        # a scheduler config of another family
        (["train", "experiment=nbody_charged_geotdm_small", "scheduler=eqgat_flow"], "E(3) DDPM or flow"),
        (["train", "experiment=registration_tudl_small", "scheduler=e3_flow"], "SE(3) diffusion or flow"),
        (["train", "experiment=qm9_eqgat_small", "scheduler=se3_flow"], "needs MoleculeSchedulers"),
        (["train", "experiment=qm9_eqgat_small", "module.ot_alignment=true"], "is for flow matching"),
    ],
)
def test_trajectory_cli_errors(args, message, tmp_path):
    r = geodiff(*args)
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr and message in r.stderr.strip().splitlines()[-1]


def test_sampling_a_molecule_checkpoint_as_trajectories_is_refused(tmp_path):
    from geodiff.errors import GeodiffError
    from geodiff.pipelines.trajectories import TrajectoryDiffusionPipeline

    with pytest.raises(GeodiffError, match="not a trajectory checkpoint .*family: molecules"):
        TrajectoryDiffusionPipeline.from_pretrained(ROOT / "checkpoints" / "qm9_eqgat_small")


def test_bad_trajectory_npz_for_evaluate(tmp_path):
    np.savez(tmp_path / "x.npz", positions=np.zeros((2, 3)))
    r = geodiff("evaluate", "task=trajectories", f"samples={tmp_path / 'x.npz'}")
    assert r.returncode == 2 and "no 'pred' array" in r.stderr
    np.savez(tmp_path / "y.npz", pred=np.zeros((2, 4, 5, 3)), truth=np.zeros((4, 6, 3)))
    r = geodiff("evaluate", "task=trajectories", f"samples={tmp_path / 'y.npz'}")
    assert r.returncode == 2 and "do not match" in r.stderr and "Traceback" not in r.stderr


def test_md17_train_sample_evaluate_keeps_the_training_stride(tmp_path):
    """An MD17 model trained on every 2nd frame forecasts test windows cut with the same stride."""
    from tests.unit.data.test_trajectory_data import _ethanol_like_md17

    R = _ethanol_like_md17(tmp_path / "ethanol.npz", frames=200)
    out = tmp_path / "run"
    r = geodiff("train", "experiment=md17_geotdm_small", f"data.path={tmp_path / 'ethanol.npz'}",
                "data.stride=2", "data.num_cond=4", "data.num_target=4", "data.window_step=null",
                "data.batch_size=4", *TINY, f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "export" / "trajectories.json").read_text())
    assert meta["data"]["dataset"] == "md17" and meta["data"]["stride"] == 2
    npz = tmp_path / "md.npz"
    r = geodiff("sample", f"ckpt={out / 'export'}", "num_systems=2", "samples_per_system=2",
                "num_inference_steps=4", f"output={npz}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(npz) as z:
        obs, truth, pred = z["observed"], z["truth"], z["pred"]
    assert obs.shape == (18, 4, 3) and truth.shape == (18, 4, 3) and pred.shape == (2, 18, 4, 3)
    # 100 strided frames = 12 windows of 8; 60/20/20 by windows: test = windows 10, 11 (strided frames 80-95)
    start = 2 * 80
    np.testing.assert_allclose(obs[:9].transpose(1, 0, 2), R[start : start + 8 : 2], atol=1e-5)
    np.testing.assert_allclose(truth[:9].transpose(1, 0, 2), R[start + 8 : start + 16 : 2], atol=1e-5)
    r = geodiff("evaluate", "task=trajectories", f"samples={npz}", f"output={tmp_path / 'r.json'}")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["k"] == 2 and np.isfinite(rep["ade_avg"]) and "constant_velocity" in rep["baselines"]


def test_flow_matching_forecasts_through_the_same_cli(tmp_path):
    """experiment=nbody_charged_geotdm_flow_small: the EGTN denoiser trained by flow matching; the export
    names its scheduler and samples with any number of steps; the diffusion-only options are refused."""
    data = tmp_path / "nb"
    r = geodiff("data", "nbody", "kind=charged", "num_train=16", "num_val=4", "num_test=4", f"output={data}")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "flow"
    r = geodiff("train", "experiment=nbody_charged_geotdm_flow_small", f"data.path={data}",
                "data.batch_size=8", "module.val_sample_every_n_epochs=1", "module.val_sampling_steps=3",
                *TINY, f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((out / "export" / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "E3FlowMatchScheduler" and config["prediction_type"] == "sample"
    r = geodiff("sample", f"ckpt={out / 'export'}", f"data={data}", "num_systems=3", "samples_per_system=2",
                "num_inference_steps=4", f"output={tmp_path / 'f.npz'}")  # fmt: skip
    assert r.returncode == 0 and "(flow, 4 steps" in r.stdout, (r.stdout, r.stderr[-2000:])
    for bad, message in (("sampler=ddim", "flow-matching export"),
                         ("variance_type=fixed_large", "DDPM option"),
                         ("schedule=rescaled", "rescaled applies to diffusion")):  # fmt: skip
        r = geodiff("sample", f"ckpt={out / 'export'}", f"data={data}", "num_systems=2",
                    "num_inference_steps=4", bad, f"output={tmp_path / 'bad.npz'}")  # fmt: skip
        assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1], (bad, r.stderr[-500:])
    assert not (tmp_path / "bad.npz").exists()
    r = geodiff("train", "experiment=nbody_charged_geotdm_flow_small", f"data.path={data}", *TINY,
                "model.prediction=epsilon", f"output_dir={tmp_path / 'eps'}")  # fmt: skip
    assert r.returncode == 2 and "prediction_type: expected sample or velocity" in r.stderr, r.stderr[-500:]


@pytest.mark.skipif(not (SHARED_DATA / "eth_ucy").is_dir(), reason="../shared/data/eth_ucy not present")
def test_geotdm_eth_ucy_protocol_script(tmp_path):
    """eval/geotdm_eth_protocol.py on a tiny model trained on EqMotion windows: the four rows (input scale 1 /
    1.4 x plain min of 20 / 60 clustered to 20), paired against the plain row; other models are refused."""
    out = tmp_path / "eth"
    r = geodiff("train", "experiment=eth_ucy_geotdm_small", f"data.path={SHARED_DATA / 'eth_ucy'}",
                "data.scene=hotel", "data.windows=eqmotion", "data.limit=16", "data.val_limit=4",
                "data.batch_size=8", *TINY, f"output_dir={out}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    script = [sys.executable, str(ROOT / "eval" / "geotdm_eth_protocol.py")]
    js = tmp_path / "protocol.json"
    r = subprocess.run([*script, "--ckpt", str(out / "export"), "--windows", "5", "--steps", "3", "--json",
                        str(js)], capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(js.read_text())
    assert rep["num_windows"] == 5 < rep["test_windows"] and rep["agents"] == "focal"
    assert set(rep["rows"]) == {f"scale{s}_{sel}" for s in ("1", "1.4") for sel in ("min20", "kmeans60to20")}
    plain = rep["rows"]["scale1_min20"]
    assert plain["ade_min_minus_plain"] == 0 and plain["fde_min_minus_plain_se"] == 0
    for row in rep["rows"].values():
        assert row["ade_min"] <= row["ade_avg"] and row["fde_min"] <= row["fde_avg"]
        assert row["ade_min_minus_plain"] == pytest.approx(row["ade_min"] - plain["ade_min"], abs=1e-12)
    r = subprocess.run([*script, "--ckpt", "nbody_charged_geotdm_small", "--json", str(tmp_path / "n.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert r.returncode == 2 and "data.windows=eqmotion" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "n.json").exists()
