"""A built wheel works like an installed tool: configs and the shipped models travel inside the package, so
from an empty folder ``geodiff info`` lists the config groups and ``geodiff sample ckpt=qm9_eqgat_small``
samples; a missing checkpoint says "not found" with the known names; the library needs no docking stack to
import (it is the ``docking`` extra)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """``pip wheel --no-deps .``, unpacked (what ``pip install`` puts in site-packages, without the venv)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = out.glob("geodiff-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def run_from_empty(site, tmp_path, *args):
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GEODIFF_CONFIG_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install of this checkout
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=empty, env=env, timeout=600)  # fmt: skip


def test_wheel_holds_configs_and_checkpoints(unpacked):
    assert (unpacked / "geodiff" / "configs" / "train.yaml").is_file()
    assert (unpacked / "geodiff" / "configs" / "experiment" / "qm9_eqgat_small.yaml").is_file()
    model = unpacked / "geodiff" / "checkpoints" / "qm9_eqgat_small" / "model"
    assert (model / "diffusion_pytorch_model.safetensors").is_file() and (model / "config.json").is_file()


def test_wheel_info_and_sample_from_an_empty_folder(unpacked, tmp_path):
    r = run_from_empty(unpacked, tmp_path, "info")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"configs: {unpacked / 'geodiff' / 'configs'}" in r.stdout and "experiment:" in r.stdout
    r = run_from_empty(unpacked, tmp_path, "sample", "ckpt=qm9_eqgat_small", "num_samples=2", "sampler=ddim",
                       "num_inference_steps=3", "output=m.sdf")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sampled 2 molecules" in r.stdout and (tmp_path / "empty" / "m.sdf").is_file()
    r = run_from_empty(unpacked, tmp_path, "sample", "ckpt=no_such_model")
    assert r.returncode == 2 and "checkpoint not found: no_such_model" in r.stderr
    assert "qm9_eqgat_small" in r.stderr


def test_core_library_imports_without_the_docking_stack(tmp_path):
    """Importing the library (CLI, pipelines, metrics) pulls in none of vina, meeko, gemmi, posebusters."""
    code = ("import sys, geodiff.cli, geodiff.pipelines.molecules, geodiff.metrics.docking, "
            "geodiff.metrics.chemistry; "
            "print(sorted({'vina', 'meeko', 'gemmi', 'posebusters'} & set(sys.modules)))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:]
