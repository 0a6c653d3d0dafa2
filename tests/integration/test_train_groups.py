"""geodiff train's config groups from the command line: ``--cfg job`` prints the composed config, ``-m`` and
sweep values are refused in one line, and the TensorBoard and W&B (offline, no network) loggers write their
files."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = ["experiment=nbody_charged_geotdm_small", "data.num_train=16", "data.num_val=4",
        "data.num_test=4", "data.batch_size=8", "model.hidden=16", "model.num_layers=1",
        "trainer.max_steps=2", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false"]  # fmt: skip


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip


def test_cfg_job_prints_the_composed_config():
    r = geodiff("train", "experiment=registration_tudl_small", "seed=3", "--cfg", "job")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["seed"] == 3 and cfg["scheduler"]["_target_"].endswith("SE3DiffusionScheduler")
    assert cfg["module"]["scheduler"] == "${scheduler}" and cfg["logger"]["_target_"].endswith("CSVLogger")
    assert set(cfg["callbacks"]) == {"model_checkpoint", "export", "progress_bar"}


@pytest.mark.parametrize("args", [["-m", "seed=0,1"], ["seed=0,1"]])
def test_sweeps_are_refused_in_one_line(args):
    r = geodiff("train", *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "one command per value" in lines[0], r.stderr


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_tensorboard_and_offline_wandb_loggers_write_their_runs(logger, tmp_path):
    pytest.importorskip(logger)
    out = tmp_path / "run"
    r = geodiff("train", *TINY, f"data.path={tmp_path / 'nb'}", f"logger={logger}", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    if logger == "tensorboard":
        assert list((out / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    else:
        assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (out / "export" / "trajectories.json").is_file()


def test_paper_size_experiments_need_the_users_training_data(tmp_path):
    """No paper-size experiment defaults to a test split: without its training data it says so in one line."""
    r = geodiff("train", "experiment=qm9_eqgat", f"paths.data_dir={tmp_path}", "trainer.accelerator=cpu",
                f"output_dir={tmp_path / 'run'}")  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("geodiff train: error: data:"), r.stderr[-2000:]
    assert f"{tmp_path}/qm9/train.npz not found" in lines[-1] and "GEODIFF_DATA" in lines[-1]
