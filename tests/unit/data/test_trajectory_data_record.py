"""Sampling rebuilds the data module from the export's data record, so it cuts the windows training cut."""

import numpy as np
import pytest
import torch

from geodiff.data.datamodules import TrajectoryDataModule, systems_for_sampling
from geodiff.errors import GeodiffError
from tests.unit.data.test_trajectory_data import _ethanol_like_md17


def test_md17_record_reproduces_the_training_windows(tmp_path):
    _ethanol_like_md17(tmp_path / "eth.npz", frames=300)
    dm = TrajectoryDataModule(dataset="md17", path=str(tmp_path / "eth.npz"), num_cond=3, num_target=3,
                              stride=3, window_step=2)  # fmt: skip
    info = dm.describe()
    assert info["stride"] == 3 and info["window_step"] == 2
    want = dm.load_split("test")
    got = systems_for_sampling(info, split="test")
    assert len(got) == len(want) > 1
    for a, b in zip(got.samples, want.samples, strict=True):
        torch.testing.assert_close(a.x, b.x)
    default = TrajectoryDataModule(dataset="md17", path=str(tmp_path / "eth.npz"), num_cond=3, num_target=3)
    assert len(default.load_split("test")) != len(want)  # the record matters: other settings, other windows


def test_a_recorded_path_missing_here_is_found_in_the_data_folder(tmp_path, monkeypatch):
    """An export trained elsewhere records that machine's path; sampling looks its last part up in
    ``$GEODIFF_DATA``."""
    (tmp_path / "data").mkdir()
    _ethanol_like_md17(tmp_path / "data" / "eth.npz", frames=300)
    info = TrajectoryDataModule(dataset="md17", path=str(tmp_path / "data" / "eth.npz"), num_cond=3,
                                num_target=3).describe()  # fmt: skip
    info["path"] = "/machine/we/trained/on/eth.npz"
    monkeypatch.setenv("GEODIFF_DATA", str(tmp_path / "data"))
    assert systems_for_sampling(info, split="test").source == str(tmp_path / "data" / "eth.npz")
    monkeypatch.setenv("GEODIFF_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(GeodiffError):
        systems_for_sampling(info, split="test")


def test_nbody_record_reads_a_single_npz_or_a_folder(tmp_path):
    from geodiff.data.nbody import simulate
    from geodiff.data.trajectories import save_nbody_npz

    save_nbody_npz(simulate(3, "springs", seed=1), tmp_path / "test.npz", "springs")
    info = {"dataset": "nbody", "kind": "springs", "num_cond": 5, "num_target": 10, "frame_offset": 4}
    from_file = systems_for_sampling(info, data=str(tmp_path / "test.npz"))
    from_folder = systems_for_sampling(info, data=str(tmp_path), num_systems=2)
    assert len(from_file) == 3 and len(from_folder) == 2 and from_file.num_frames == 15
    torch.testing.assert_close(from_file.samples[0].x, from_folder.samples[0].x)
    fresh = systems_for_sampling(info, num_systems=2, seed=5)
    assert "freshly simulated springs" in fresh.source and len(fresh) == 2
    assert not np.allclose(fresh.samples[0].x.numpy(), from_file.samples[0].x.numpy())


def test_bad_records_and_paths_are_refused(tmp_path):
    with pytest.raises(GeodiffError, match="unknown trajectory data set 'lorenz'"):
        systems_for_sampling({"dataset": "lorenz", "num_cond": 2, "num_target": 2})
    (tmp_path / "one.npz").write_bytes(b"")
    dm = TrajectoryDataModule(dataset="nbody", path=str(tmp_path / "one.npz"))
    with pytest.raises(GeodiffError, match="is a file; training reads an N-body folder"):
        dm.split("train")


def test_recorded_data_path_rules(tmp_path, monkeypatch):
    """One rule for every export (trajectory data, registration meshes): as recorded when it exists, else the
    part after the recorded path's last ``data`` folder under ``$GEODIFF_DATA``, else its last part."""
    from pathlib import Path

    from geodiff.config import recorded_data_path

    root = tmp_path / "here"
    (root / "registration" / "tudl" / "models").mkdir(parents=True)
    (root / "eth_ucy").mkdir()
    monkeypatch.setenv("GEODIFF_DATA", str(root))
    assert recorded_data_path(root / "eth_ucy") == root / "eth_ucy"  # exists: as recorded
    tudl = root / "registration" / "tudl" / "models"
    assert recorded_data_path("/gone/data/registration/tudl/models") == tudl
    assert recorded_data_path("/gone/shared/eth_ucy") == root / "eth_ucy"  # no data folder: the last part
    assert recorded_data_path("/gone/data/eth_ucy") == root / "eth_ucy"
    assert recorded_data_path("/gone/data/nowhere") == Path("/gone/data/nowhere")  # the caller reports it
    assert recorded_data_path("/gone/data") == Path("/gone/data")
