"""Warm starts from exported models (``module.init_from``) for the registration and trajectory modules."""

import pytest
import torch

from geodiff.errors import GeodiffError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.models.registration import RegistrationNet
from geodiff.training.export import read_training_record, training_record
from geodiff.training.registration import RegistrationDiffusionModule
from geodiff.training.trajectories import TrajectoryDiffusionModule


def small_registration(dim=16):
    return RegistrationNet(dim=dim, num_neighbors=8, encoder_layers=1, attention_layers=1, heads=2)


def test_registration_module_warm_starts_and_rejects_other_architectures(tmp_path):
    torch.manual_seed(0)
    src = small_registration()
    src.save_pretrained(tmp_path / "exp" / "model")
    torch.manual_seed(1)
    module = RegistrationDiffusionModule(small_registration(), init_from=str(tmp_path / "exp"))
    for a, b in zip(module.model.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(module.ema.module.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the EMA starts from the warm weights too
    with pytest.raises(GeodiffError, match="another architecture"):
        RegistrationDiffusionModule(small_registration(dim=32), init_from=str(tmp_path / "exp"))
    with pytest.raises(GeodiffError, match="init_from: checkpoint not found: .*nothing .*shipped model: "):
        RegistrationDiffusionModule(small_registration(), init_from=str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeodiffError, match="not an exported model"):
        RegistrationDiffusionModule(small_registration(), init_from=str(tmp_path / "empty"))


def test_trajectory_module_warm_starts(tmp_path):
    kw = dict(hidden=8, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=6)
    torch.manual_seed(0)
    src = GeoTDMDenoiser(**kw)
    src.save_pretrained(tmp_path / "exp" / "model")
    torch.manual_seed(1)
    module = TrajectoryDiffusionModule(GeoTDMDenoiser(**kw), init_from=str(tmp_path / "exp"))
    for a, b in zip(module.model.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_warm_started_exports_record_their_lineage(tmp_path):
    """Each export of a warm-started run lists every earlier stage and sums the steps, even when it
    overwrites the folder it started from (the shipped-model workflow)."""
    kw = dict(hidden=8, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=6)
    ship = tmp_path / "ship"
    first = TrajectoryDiffusionModule(GeoTDMDenoiser(**kw))
    first.export_pretrained(ship, {"command": "geodiff train a", "wall_time": "5 min", "hardware": "GPU"})
    meta = read_training_record(ship)
    assert meta == {"global_step": 0, "epoch": 0, "command": "geodiff train a", "wall_time": "5 min",
                    "hardware": "GPU"}  # fmt: skip
    for name in ("b", "c"):
        module = TrajectoryDiffusionModule(GeoTDMDenoiser(**kw), init_from=str(ship))
        module.export_pretrained(ship, {"command": f"geodiff train {name}", "wall_time": "90 min"})
    rec = read_training_record(ship)
    assert [s["command"] for s in rec["stages"]] == ["geodiff train a", "geodiff train b", "geodiff train c"]
    assert rec["command"] == "geodiff train a  THEN  geodiff train b  THEN  geodiff train c"
    assert rec["wall_time"] == "5 min + 90 min + 90 min" and rec["stages"][0]["hardware"] == "GPU"
    assert read_training_record(tmp_path / "nothing") is None


def test_training_record_sums_stages_and_keeps_shared_fields():
    parent = {
        "global_step": 100,
        "epoch": 3,
        "command": "x",
        "data": "qm9 test split",
        "hardware": "H100",
        "batch_size": 128,
        "lr_schedule": "cosine from 0.0005 to 2.5e-05 over 100 steps",
    }
    rec = training_record(50, 2, {"command": "y"}, parent)
    assert rec["global_step"] == 150 and rec["epoch"] == 5 and rec["data"] == "qm9 test split"
    assert "hardware" not in rec and "batch_size" not in rec  # per stage, not for the whole lineage
    assert "lr_schedule" not in rec and rec["stages"][0]["lr_schedule"].startswith("cosine")
    assert rec["stages"][0]["hardware"] == "H100" and rec["stages"][0]["batch_size"] == 128
    assert rec["stages"][1] == {"global_step": 50, "epoch": 2, "command": "y"}
    assert "wall_time" not in rec  # not every stage has one
    assert training_record(7, 1, None, None) == {"global_step": 7, "epoch": 1}
