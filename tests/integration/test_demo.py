"""`make demo`'s script (sampling/demo.py): a small run of every step writes its outputs and summary; the
full default run (with Vina docking into the PoseBusters pocket) is a slow test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_demo(out, *args, timeout=900):
    return subprocess.run([sys.executable, str(ROOT / "sampling" / "demo.py"), "--out", str(out), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)  # fmt: skip


def test_small_demo_without_docking(tmp_path):
    r = run_demo(tmp_path / "demo", "--molecules", "4", "--dock", "0", "--systems", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert s["molecules"]["num_samples"] == 4 and 0 <= s["molecules"]["validity"] <= 1
    assert s["trajectories"]["systems"] == 2 and s["trajectories"]["ade_avg"] > 0
    assert s["registration"]["identity"]["rotation_error_deg"] > 0 and "docking" not in s
    for name in ("molecules.sdf", "molecules.png", "trajectories.png", "registration.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
        assert str(tmp_path / "demo" / name) in r.stdout  # every output path is printed
    assert "geodiff demo" in r.stdout and "registration" in r.stdout


def test_demo_rejects_bad_arguments(tmp_path):
    r = run_demo(tmp_path / "d", "--molecules", "0")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:")
    r = run_demo(tmp_path / "d", "--pocket", "9xyz")
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_full_demo_docks_into_the_posebusters_pocket(tmp_path):
    r = run_demo(tmp_path / "demo", timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((tmp_path / "demo" / "docking.json").read_text())
    assert d["pocket"] == "1s3v" and d["summary"]["num_docked"] >= 2
    ref = [m for m in d["molecules"] if m["name"].startswith("crystal_ligand")][0]
    assert ref["ok"] and ref["score"] < -7  # the crystal ligand redocks with a strong score
