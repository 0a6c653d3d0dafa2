"""`geodiff sample devices=2`: two processes (gloo, the code path of two GPUs) each sample their share with
seed + rank; rank 0 merges into one output that equals the shares sampled one after the other in a single
process, and is the same on every run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from geodiff.data.datamodules import systems_for_sampling
from geodiff.data.trajectories import collate_trajectories
from geodiff.errors import GeodiffValueError
from geodiff.pipelines import MoleculeDiffusionPipeline, TrajectoryDiffusionPipeline
from geodiff.pipelines.sharding import Shard

ROOT = Path(__file__).resolve().parents[2]


def geodiff(*args):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=dict(os.environ))  # fmt: skip


def _ok(r):
    assert r.returncode == 0, (r.stdout[-1500:], r.stderr[-3000:])
    return r


def test_shares_are_contiguous_balanced_and_refuse_too_few_items():
    ranges = [Shard(r, 3).range(10) for r in range(3)]
    assert ranges == [(0, 4), (4, 7), (7, 10)]
    assert [Shard(r, 3).seed(5) for r in range(3)] == [5, 6, 7] and Shard(1, 3).seed(None) is None
    assert Shard().range(7) == (0, 7) and Shard().gather("x") == ["x"]
    with pytest.raises(GeodiffValueError, match="num_samples: 1 cannot be shared among 2 processes"):
        Shard(0, 2).range(1, "num_samples")


@pytest.mark.slow  # two-process sampling (28 s); the trajectory variant stays in make test
def test_molecules_on_two_processes_merge_the_per_rank_samples(tmp_path):
    args = ["ckpt=qm9_eqgat_small", "num_samples=7", "sampler=ddim", "num_inference_steps=8", "batch_size=3",
            "seed=4", "devices=2"]  # fmt: skip
    r = _ok(geodiff("sample", *args, f"output={tmp_path / 'a.sdf'}"))
    assert "sampled 7 molecules" in r.stdout and "2 processes" in r.stdout
    assert r.stdout.count("sampled 7 molecules") == 1  # rank 0 reports; rank 1 prints nothing
    _ok(geodiff("sample", *args, f"output={tmp_path / 'b.sdf'}"))
    assert (tmp_path / "a.sdf").read_text() == (tmp_path / "b.sdf").read_text()  # the same on every run
    merged = list(Chem.SDMolSupplier(str(tmp_path / "a.sdf"), sanitize=False, removeHs=False))
    assert [m.GetProp("_Name") for m in merged] == [f"sample_{i}" for i in range(7)]
    pipe = MoleculeDiffusionPipeline.from_pretrained("qm9_eqgat_small")
    kw = dict(sampler="ddim", num_inference_steps=8, batch_size=3, progress=False)
    expected = pipe(num_samples=4, seed=4, **kw).molecules + pipe(num_samples=3, seed=5, **kw).molecules
    for got, want in zip(merged, expected, strict=True):
        assert [a.GetAtomicNum() for a in got.GetAtoms()] == want.atomic_numbers.tolist()
        np.testing.assert_allclose(got.GetConformer().GetPositions(), want.pos, atol=2e-4)  # SDF: 4 decimals
    bad = geodiff("sample", "ckpt=qm9_eqgat_small", "num_samples=1", "devices=2", "num_inference_steps=2",
                  f"output={tmp_path / 'c.sdf'}")  # fmt: skip
    assert bad.returncode == 2 and "cannot be shared among 2 processes" in bad.stderr
    assert not (tmp_path / "c.sdf").exists()


def test_trajectories_on_two_processes_merge_the_per_rank_forecasts(tmp_path):
    args = ["ckpt=nbody_charged_geotdm_small", "num_systems=5", "samples_per_system=2", "sampler=ddim",
            "num_inference_steps=6", "seed=1", "devices=2"]  # fmt: skip
    r = _ok(geodiff("sample", *args, f"output={tmp_path / 't.npz'}"))
    assert "forecast 5 systems x 2 samples" in r.stdout and "2 processes" in r.stdout
    got = np.load(tmp_path / "t.npz")
    pipe = TrajectoryDiffusionPipeline.from_pretrained("nbody_charged_geotdm_small")
    ds = systems_for_sampling(pipe.data_info, None, "test", 5, 1)  # simulated, seeded like the command
    systems = collate_trajectories(ds.samples)
    kw = dict(num_samples=2, sampler="ddim", num_inference_steps=6, progress=False)
    parts = [pipe(systems.systems(0, 3), seed=1, **kw), pipe(systems.systems(3, 5), seed=2, **kw)]
    expected = torch.cat([p.trajectories for p in parts], dim=1).numpy()
    assert got["pred"].shape == expected.shape
    np.testing.assert_allclose(got["pred"], expected, atol=1e-5)
