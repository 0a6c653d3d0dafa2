"""Trajectory data: N-body simulators (physics checks), the N-body npz round trip, MD17 (sGDML npz) windows
and bond-hop edges, ETH-UCY text files and windows, batching of systems of different sizes, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geodiff.data.nbody import DEFAULTS, NBodyConfig, simulate
from geodiff.data.trajectories import (
    collate_trajectories,
    load_eth_ucy,
    load_md17_npz,
    load_nbody_npz,
    read_eth_ucy_file,
    save_nbody_npz,
)
from geodiff.errors import GeodiffError, GeodiffValueError

ETH = Path(__file__).resolve().parents[4] / "shared" / "data" / "eth_ucy"


def test_simulators_shapes_seeding_and_conservation():
    a, b = simulate(3, "charged", seed=1), simulate(3, "charged", seed=1)
    np.testing.assert_array_equal(a["loc"], b["loc"])
    assert a["loc"].shape == (3, 49, 5, 3) and set(np.unique(a["charges"])) <= {-1.0, 1.0}
    sp = simulate(4, "springs", seed=0)
    assert (sp["edges"] == sp["edges"].transpose(0, 2, 1)).all() and (
        np.diagonal(sp["edges"], 0, 1, 2) == 0
    ).all()
    # pairwise forces: total momentum (unit masses) is conserved up to round-off for springs and gravity
    for kind in ("springs", "gravity"):
        s = simulate(2, kind, seed=0)
        p = s["vel"].sum(axis=2)
        np.testing.assert_allclose(p, np.broadcast_to(p[:, :1], p.shape), atol=1e-9)
    # spring energy (kinetic + 0.1/2 sum_ij k_ij |x_i - x_j|^2 over pairs) drifts little with dt = 1e-3
    x, v, k = sp["loc"], sp["vel"], sp["edges"]
    d2 = ((x[:, :, :, None] - x[:, :, None]) ** 2).sum(-1)
    e = 0.5 * (v**2).sum((-1, -2)) + 0.5 * 0.1 * 0.5 * (k[:, None] * d2).sum((-1, -2))
    assert np.abs(e / e[:, :1] - 1).max() < 0.02
    with pytest.raises(GeodiffValueError, match="unknown N-body"):
        simulate(1, "magnetic")
    with pytest.raises(GeodiffValueError, match="at least one system"):
        simulate(0, "charged")
    with pytest.raises(GeodiffValueError, match="saves no frame"):
        simulate(1, NBodyConfig(num_steps=100, sample_freq=100))
    assert DEFAULTS["gravity"].num_particles == 10


def test_nbody_npz_round_trip_windows_and_errors(tmp_path):
    sim = simulate(3, "charged", seed=0)
    path = save_nbody_npz(sim, tmp_path / "c.npz", "charged", seed=0)
    ds = load_nbody_npz(path, num_cond=10, num_target=20, frame_offset=5)
    assert len(ds) == 3 and ds.num_frames == 30 and ds.dim == 3
    s = ds[1]
    np.testing.assert_allclose(s.x.numpy(), sim["loc"][1, 5:35].transpose(1, 0, 2), rtol=1e-6)
    assert s.edge_index.shape == (2, 20)  # fully connected, 5 x 4 directed edges
    q = sim["charges"][1]
    np.testing.assert_allclose(s.edge_attr[:, 0].numpy(), q[s.edge_index[0]] * q[s.edge_index[1]])
    with pytest.raises(GeodiffError, match="needs frames"):
        load_nbody_npz(path, 10, 40, frame_offset=5)
    bad = dict(sim)
    bad["loc"] = bad["loc"].copy()
    bad["loc"][2, 3, 0, 0] = np.nan
    save_nbody_npz(bad, tmp_path / "nan.npz", "charged")
    with pytest.raises(GeodiffError, match="NaN/inf positions in 1 system"):
        load_nbody_npz(tmp_path / "nan.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(GeodiffError, match="not an N-body file"):
        load_nbody_npz(tmp_path / "other.npz")
    with pytest.raises(GeodiffError, match="file not found"):
        load_nbody_npz(tmp_path / "missing.npz")


def test_spread_evenly_keeps_first_last_and_evenly_spaced_samples(tmp_path):
    path = save_nbody_npz(simulate(7, "charged", seed=0), tmp_path / "c.npz", "charged")
    full = load_nbody_npz(path, num_cond=10, num_target=20)
    ds = load_nbody_npz(path, num_cond=10, num_target=20).spread_evenly(4)  # positions 0, 2, 4, 6
    assert len(ds) == 4
    for got, i in zip(ds.samples, (0, 2, 4, 6), strict=True):
        torch.testing.assert_close(got.x, full[i].x)
    for n in (0, 7, 9):  # all of them
        assert len(load_nbody_npz(path, num_cond=10, num_target=20).spread_evenly(n)) == 7


def _ethanol_like_md17(path, frames=400):
    # C-C-O backbone with hydrogens (ethanol's 9 atoms), small thermal motion around it
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    pos = np.array([[0, 0, 0], [1.52, 0, 0], [2.0, 1.35, 0], [-0.4, 1.0, 0], [-0.4, -0.5, 0.9],
                    [-0.4, -0.5, -0.9], [1.9, -0.5, 0.9], [1.9, -0.5, -0.9], [2.95, 1.3, 0]])  # fmt: skip
    rng = np.random.default_rng(0)
    R = pos + 0.02 * rng.normal(size=(frames, 9, 3))
    np.savez(path, R=R, z=z, E=np.zeros(frames), F=np.zeros_like(R))
    return R


def test_md17_windows_are_chronological_with_bond_hop_edges(tmp_path):
    R = _ethanol_like_md17(tmp_path / "eth.npz")
    kw = dict(num_cond=5, num_target=5, stride=4)
    tr, va, te = (load_md17_npz(tmp_path / "eth.npz", split=s, **kw) for s in ("train", "val", "test"))
    assert len(tr) == 6 and len(va) == 2 and len(te) == 2  # 100 strided frames, 10 windows, 60/20/20
    np.testing.assert_allclose(tr[0].x.numpy(), R[::4][:10].transpose(1, 0, 2), rtol=1e-6)
    last_train = tr[len(tr) - 1].x[:, -1].numpy()
    assert not any(np.allclose(last_train, te[i].x[:, 0].numpy()) for i in range(len(te)))
    s = tr[0]
    assert s.h.shape == (9, 4) and s.h[:, 0].sum() == 6  # six hydrogens (H C N O one-hot)
    hops = s.edge_attr.argmax(-1) + 1
    pairs = {(int(i), int(j)): int(h) for i, j, h in zip(*s.edge_index, hops, strict=True)}
    assert pairs[(0, 1)] == 1 and pairs[(0, 2)] == 2 and pairs[(3, 2)] == 3 and (3, 8) not in pairs
    np.savez(tmp_path / "cl.npz", R=np.zeros((50, 1, 3)), z=np.array([17]))
    with pytest.raises(GeodiffError, match=r"elements \[17\]"):
        load_md17_npz(tmp_path / "cl.npz")
    with pytest.raises(GeodiffError, match="need 3"):
        load_md17_npz(tmp_path / "eth.npz", num_cond=10, num_target=20, stride=100)
    with pytest.raises(GeodiffError, match="split"):
        load_md17_npz(tmp_path / "eth.npz", split="dev", **kw)


def test_eth_ucy_files_windows_and_mixed_size_batches(tmp_path):
    folder = tmp_path / "hotel" / "train"
    folder.mkdir(parents=True)
    rows = []
    for f in range(0, 200, 10):  # frames every 10, agent 1 throughout, agent 2 leaves after 12 frames
        rows.append(f"{f}\t1\t{f * 0.01:.3f}\t1.0")
        if f < 120:
            rows.append(f"{f}\t2\t0.5\t{-f * 0.02:.3f}")
    (folder / "a.txt").write_text("\n".join(rows) + "\n")
    ds = load_eth_ucy(tmp_path, "hotel", "train", obs=4, pred=6)
    assert ds.dim == 2 and ds.num_frames == 10 and len(ds) == 11
    assert [ds[i].x.shape[0] for i in (0, 2, 3)] == [2, 2, 1]  # agent 2 is in windows starting 0..2
    np.testing.assert_allclose(ds[0].x[0, :, 0].numpy(), np.arange(0, 100, 10) * 0.01, atol=1e-6)
    batch = collate_trajectories([ds[0], ds[5]])
    assert batch.x.shape == (3, 10, 2) and batch.batch.tolist() == [0, 0, 1]
    assert torch.equal(batch.systems(1, 2).x, ds[5].x)
    (folder / "b.txt").write_text("0 1 0.5\n")
    with pytest.raises(GeodiffError, match="b.txt:1: expected 4 columns"):
        load_eth_ucy(tmp_path, "hotel", "train")
    (folder / "b.txt").write_text("0 1 x 0.5\n")
    with pytest.raises(GeodiffError, match="not numbers"):
        read_eth_ucy_file(folder / "b.txt")
    with pytest.raises(GeodiffError, match="unknown ETH-UCY scene"):
        load_eth_ucy(tmp_path, "paris")
    with pytest.raises(GeodiffError, match="folder not found"):
        load_eth_ucy(tmp_path, "zara1")


@pytest.mark.skipif(not (ETH / "hotel" / "test").is_dir(), reason="../shared/data/eth_ucy not present")
def test_real_eth_ucy_hotel_test_split():
    ds = load_eth_ucy(ETH, "hotel", "test", limit=50)
    assert len(ds) == 50 and ds.dim == 2 and ds.num_frames == 20
    for i in range(len(ds)):
        x = ds[i].x
        assert torch.isfinite(x).all() and x.shape[1] == 20
        # pedestrians walk: 0.4 s steps of at most a few metres
        assert (x[:, 1:] - x[:, :-1]).norm(dim=-1).max() < 3.0
