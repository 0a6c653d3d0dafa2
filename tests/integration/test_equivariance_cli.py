"""``geodiff equivariance``: the orbit sweep of every family's shipped export, its JSON and NERO plot, a plain
(non-equivariant) backbone that shows orbit structure, frame averaging that removes it, and one-line errors.

Small grids keep it fast; ``make equivariance`` runs the full sweep of the six shipped models."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from geodiff.cli import main
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.testing.nero import equivariance_report, plot_orbit_comparison

ROOT = Path(__file__).resolve().parents[2]
CHEAP = ["num_axes=2", "num_angles=2", "num_items=2", "num_transforms=1", "times=[0.5]", "task_axes=1",
         "task_angles=2", "task_steps=3"]  # fmt: skip


SHIPPED = [
    "nbody_charged_geotdm_small",
    "eth_ucy_hotel_geotdm_small",
    "qm9_eqgat_small",
    "registration_tudl_small",
]


@pytest.mark.parametrize("ckpt", SHIPPED)
def test_shipped_models_are_equivariant_to_round_off(ckpt, tmp_path, capsys):
    extra = ["num_items=1", "task=false"] if ckpt.startswith("registration") else []
    rc = main(["equivariance", f"ckpt={ckpt}", *CHEAP, *extra, f"output={tmp_path / 'r.json'}",
               f"plot={tmp_path / 'p.png'}"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "p.png").stat().st_size > 10_000
    for sym in ("rotation", "translation", "permutation"):
        assert sym in out
        f64, f32 = r["precisions"]["float64"][sym], r["precisions"]["float32"][sym]
        # float64: at round-off; float32 within a few times the model's own float32 round-off
        assert f64["max"] < 1e-8, (sym, f64)
        assert f32["max"] < 20 * r["precisions"]["float32"]["level"] + 1e-6, (sym, f32)
    if ckpt.startswith("registration"):
        assert r["precisions"]["float64"]["reflection"] is None  # poses are proper rotations
    else:
        assert r["precisions"]["float64"]["reflection"]["max"] < 1e-8
    assert r["grid"]["dim"] == (2 if "eth_ucy" in ckpt else 3)
    if not extra:  # the task metric does not move along the orbit
        t = r["task"]
        assert max(abs(v - t["identity"]) for v in t["values"]) < 1e-3 * max(1.0, abs(t["identity"]))


def _plain_export(tmp_path, frame_averaging="none"):
    """The charged-particle export with its EGTN swapped for an (untrained, perturbed) plain backbone."""
    d = tmp_path / f"plain_{frame_averaging}"
    shutil.copytree(ROOT / "checkpoints" / "nbody_charged_geotdm_small", d)
    cfg = json.loads((d / "model" / "config.json").read_text())
    drop = ("backbone", "frame_averaging")
    keep = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in drop}
    torch.manual_seed(0)
    m = GeoTDMDenoiser(**keep, backbone="plain", frame_averaging=frame_averaging)
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.3)
    shutil.rmtree(d / "model")
    m.save_pretrained(d / "model")
    return d


def test_plain_backbone_shows_orbit_structure_and_frame_averaging_removes_it(tmp_path):
    opts = dict(num_axes=3, num_angles=2, num_items=2, num_transforms=1, times=(0.5,), task_axes=1,
                task_angles=2, task_steps=3)  # fmt: skip
    plain = equivariance_report(_plain_export(tmp_path), **opts)
    fa = equivariance_report(_plain_export(tmp_path, "E"), **opts)
    for sym in ("rotation", "reflection", "translation"):
        assert plain["precisions"]["float64"][sym]["max"] > 1e-3, sym
        assert fa["precisions"]["float64"][sym]["max"] < 1e-8, sym
    assert plain["precisions"]["float64"]["permutation"]["max"] < 1e-8  # a graph network all the same
    orbit = torch.tensor(plain["orbit_rotation_error"]["float64"])
    assert orbit.min() > 1e-4 and orbit.max() > 1.5 * orbit.min()  # structure on the orbit, not a constant
    drift = plain["task"]["sample_equivariance_error"]
    assert max(drift) > 1e-3 and max(fa["task"]["sample_equivariance_error"]) < 1e-3
    png = plot_orbit_comparison({"plain": plain, "plain, frame-averaged": fa}, tmp_path / "nero.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["symmetries=[rotation,scaling]"], "unknown group 'scaling'"),
        (["num_axes=0"], "num_axes"),
        (["times=[1.5]"], "times"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["equivariance", "ckpt=nbody_charged_geotdm_small", *args, f"output={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_folder_without_positions_is_one_line(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    rc = main(["equivariance", f"ckpt={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "positions" in err[0], err
