"""The geodiff CLI through a real subprocess: success paths, outputs, and one-line errors with exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from geodiff.config import compose, config_dir, instantiate
from geodiff.io import public_config
from geodiff.schedulers import MoleculeSchedulers

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "geodiff.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
    )


SCHEDULER_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "scheduler").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", SCHEDULER_CONFIGS)
def test_every_scheduler_config_composes_and_builds(name, tmp_path):
    cfg = compose("schedule", [f"scheduler={name}"])
    sched = instantiate(cfg.scheduler)
    if isinstance(sched, MoleculeSchedulers):  # a set whose categorical parts are completed by the data
        sched = sched.pos
    sched.save_pretrained(tmp_path)
    again = type(sched).from_pretrained(tmp_path)
    assert public_config(again) == public_config(sched)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_names_its_scheduler_config(name):
    """Schedulers come from configs/scheduler/* (swappable with scheduler=...), not from module code."""
    cfg = compose("train", [f"experiment={name}"])
    assert cfg.scheduler is not None and "_target_" in cfg.scheduler
    assert OmegaConf.to_container(cfg.module)["scheduler"] == "${scheduler}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_takes_the_common_trainer_limits(name):
    """max_epochs / max_steps / max_time are overridable without Hydra's `+` in every experiment."""
    cfg = compose("train", [f"experiment={name}", "trainer.max_steps=7", "trainer.max_epochs=3",
                            'trainer.max_time="00:00:01:00"'])  # fmt: skip
    assert (cfg.trainer.max_steps, cfg.trainer.max_epochs, cfg.trainer.max_time) == (7, 3, "00:00:01:00")
    assert compose("train", [f"experiment={name}"]).trainer.max_steps == -1  # Lightning's "no limit"


def test_schedule_command_saves_and_plots(tmp_path):
    out, png = tmp_path / "sched", tmp_path / "s.png"
    r = run("schedule", "scheduler=se3_registration", "num_inference_steps=5", f"output={out}", f"plot={png}")
    assert r.returncode == 0, r.stderr
    assert "SE3DiffusionScheduler" in r.stdout and "inference timesteps  199, 159, 119, 79, 39" in r.stdout
    cfg = json.loads((out / "scheduler_config.json").read_text())
    assert cfg["_class_name"] == "SE3DiffusionScheduler" and cfg["num_train_timesteps"] == 200
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schedule", "scheduler=no_such_scheduler"], "Could not find 'scheduler/no_such_scheduler'"),
        (["schedule", "scheduler.beta_schedule=quadratic"], "beta_schedule"),
        (["schedule", "scheduler.num_train_timesteps=0"], "num_train_timesteps"),
        (["schedule", "+scheduler.bogus=1"], "bogus"),
        (["schedule", "scheduler.num_train_timesteps=[1"], "error"),
        (["schedule", "scheduler=se3_registration", "scheduler.sigma_r=-1"], "sigma_r"),
        (["schedule", "num_inference_steps=100000"], "num_inference_steps"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert message in lines[0]


def test_help_and_info():
    r = run("--help")
    assert r.returncode == 0 and "schedule" in r.stdout and "info" in r.stdout
    r = run("schedule", "--help")
    assert r.returncode == 0 and "overrides" in r.stdout
    r = run("info")
    assert r.returncode == 0 and "scheduler:" in r.stdout and "e3_ddpm" in r.stdout
    r = run()
    assert r.returncode == 2


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "geodiff"
    assert exe.exists(), "pip install -e . should put the geodiff console script beside python"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("geodiff ")


def test_config_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODIFF_CONFIG_DIR", str(tmp_path / "missing"))
    from geodiff.errors import GeodiffError

    with pytest.raises(GeodiffError, match="config folder not found"):
        config_dir()
