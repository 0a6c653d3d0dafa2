"""EqMotion's ETH-UCY windows (GeoTDM's paper protocol), against hand-made windows whose expected cuts come
from reading MediaBrain-SJTU/EqMotion eth_ucy/process_eth_data_diverse.py (total_num 1, univ 2, zara1 3;
neighbours within 5 m at the last observed frame, nearest first; fewer agents than total_num: the focal
agent then all others in their order); and focal-agent scoring (``agents=focal``)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geodiff.data.datamodules import TrajectoryDataModule
from geodiff.data.trajectories import eqmotion_windows, load_eth_ucy
from geodiff.errors import GeodiffError
from geodiff.metrics.trajectories import displacement_errors, evaluate_trajectory_file, focal_nodes

ETH = Path(__file__).resolve().parents[4] / "shared" / "data" / "eth_ucy"


def _window(last_obs_x, obs=2, frames=4):
    """Agents on the x axis, standing still, at ``last_obs_x`` (tagged in y by their index)."""
    w = np.zeros((len(last_obs_x), frames, 2))
    for i, x in enumerate(last_obs_x):
        w[i, :, 0], w[i, :, 1] = x, 0.001 * i
    return w


def _agents(ws):
    return [[int(round(1000 * a[0, 1])) for a in w] for w in ws]


def test_cuts_follow_the_reference_rules():
    w = _window([0.0, 1.0, 10.0, 2.0])
    # zara1: up to 3 agents within 5 m, nearest first
    assert _agents(eqmotion_windows(w, "zara1", obs=2)) == [[0, 1, 3], [1, 0, 3], [2], [3, 1, 0]]
    # univ: up to 2
    assert _agents(eqmotion_windows(w, "univ", obs=2)) == [[0, 1], [1, 0], [2], [3, 1]]
    # the other scenes: the focal agent alone
    assert _agents(eqmotion_windows(w, "eth", obs=2)) == [[0], [1], [2], [3]]
    # fewer agents than total_num: the focal one, then the others in their order, however far
    assert _agents(eqmotion_windows(_window([0.0, 50.0]), "zara1", obs=2)) == [[0, 1], [1, 0]]


def _scene(tmp_path):
    folder = tmp_path / "univ" / "train"
    folder.mkdir(parents=True)
    rows = []
    for f in range(12):  # three pedestrians over 12 frames (0.4 s apart), two close, one far
        for p, (x, y) in enumerate([(0.0, 0.0), (1.0, 0.5), (20.0, 0.0)]):
            rows.append(f"{10 * f}\t{p + 1}.0\t{x + 0.3 * f:.2f}\t{y:.2f}")
    (folder / "a.txt").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_eqmotion_loading_and_record(tmp_path):
    root = _scene(tmp_path)
    sgan = load_eth_ucy(root, "univ", "train", obs=4, pred=6)
    eq = load_eth_ucy(root, "univ", "train", obs=4, pred=6, windows="eqmotion")
    assert len(eq) == sum(s.num_nodes for s in sgan.samples)  # a window per agent
    assert [s.num_nodes for s in eq.samples[:3]] == [2, 2, 1]  # univ: the nearest neighbour within 5 m
    torch.testing.assert_close(eq.samples[1].x[0], sgan.samples[0].x[1])  # the focal agent comes first
    assert "EqMotion" in eq.source
    dm = TrajectoryDataModule(dataset="eth_ucy", path=str(root), scene="univ", num_cond=4, num_target=6,
                              windows="eqmotion")  # fmt: skip
    info = dm.describe()
    assert info["windows"] == "eqmotion"
    assert TrajectoryDataModule.from_record(info).windows == "eqmotion"
    with pytest.raises(GeodiffError, match="windows"):
        load_eth_ucy(root, "univ", "train", windows="trajnet")
    with pytest.raises(GeodiffError, match="windows"):
        TrajectoryDataModule(dataset="eth_ucy", windows="trajnet")


@pytest.mark.skipif(not (ETH / "zara1" / "test").is_dir(), reason="../shared/data/eth_ucy not present")
def test_real_zara1_windows_have_at_most_three_agents():
    ds = load_eth_ucy(ETH, "zara1", "test", limit=300, windows="eqmotion")
    sizes = [s.num_nodes for s in ds.samples]
    assert max(sizes) == 3 and min(sizes) >= 1 and len(ds) == 300


def test_focal_scoring(tmp_path):
    g = torch.Generator().manual_seed(0)
    batch = torch.tensor([0, 0, 1, 2, 2, 2])
    truth = torch.randn(6, 5, 2, generator=g)
    pred = truth + 0.1 * torch.randn(3, 6, 5, 2, generator=g)
    pred[:, focal_nodes(batch)] += 1.0  # the focal agents are the ones predicted badly
    path = tmp_path / "f.npz"
    np.savez(path, pred=pred.numpy(), truth=truth.numpy(), batch=batch.numpy(), observed=truth[:, :2].numpy())
    every = evaluate_trajectory_file(path)
    focal = evaluate_trajectory_file(path, agents="focal")
    want = displacement_errors(pred[:, [0, 2, 3]], truth[[0, 2, 3]])
    assert focal["agents"] == "focal" and focal["num_nodes"] == 3
    assert focal["ade_min"] == pytest.approx(want["ade_min"]) and focal["ade_min"] > every["ade_min"]
    with pytest.raises(GeodiffError, match="agents"):
        evaluate_trajectory_file(path, agents="some")
