"""Multi-process training (Lightning DDP, 2 CPU processes over gloo: the code path of 2 GPUs) for one
molecule, one trajectory and the registration experiment: each run finishes without searching for unused
parameters, exports once, and the export samples; processes draw different noise; the same seed gives the
same run; a run resumes from last.ckpt under DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "callbacks.progress_bar=null",
       "+trainer.enable_progress_bar=false"]  # fmt: skip


def geodiff(*args, env=None):
    return subprocess.run([sys.executable, "-m", "geodiff.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, **(env or {})})  # fmt: skip


def _ok(r):
    assert r.returncode == 0, (r.stdout[-1500:], r.stderr[-3000:])
    return r


def test_molecules_ddp_two_processes_draw_different_noise_and_export_once(qm9_npz, tmp_path):
    out = tmp_path / "run"
    probe = tmp_path / "probe"
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    r = _ok(geodiff("train", "experiment=qm9_eqgat_small", f"data.path={qm9_npz}", "data.limit=40",
                    f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=8", "model.s_dim=16",
                    "model.v_dim=4", "model.e_dim=4", "model.num_layers=2",
                    "scheduler.pos.num_train_timesteps=20",
                    "trainer.max_epochs=1", "module.val_sample_every_n_epochs=1", "module.val_num_samples=2",
                    "module.val_sampling_steps=2", f"output_dir={out}", *DDP,
                    "+callbacks.probe._target_=ddp_probe.RandomStateProbe", f"+callbacks.probe.path={probe}",
                    env=env))  # fmt: skip
    assert r.stdout.count("outputs:") == 1  # printed by process 0 only
    assert "unused" not in r.stderr
    fingerprints = [(probe / f"rank{k}.txt").read_text().split() for k in (0, 1)]
    assert fingerprints[0][0] == fingerprints[1][0] == "2"
    assert fingerprints[0][1] != fingerprints[1][1]  # each process its own noise and timesteps
    metrics = (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "val/mol_stability" in metrics and "val_loss" in metrics
    assert "2 x CPU" in (out / "export" / "molecules.json").read_text()
    s = _ok(geodiff("sample", f"ckpt={out / 'export'}", "num_samples=2", "num_inference_steps=3",
                    f"output={tmp_path / 'm.sdf'}"))  # fmt: skip
    assert "sampled 2 molecules" in s.stdout


@pytest.mark.slow  # three DDP runs (35 s); molecules and registration DDP stay in make test
def test_trajectories_ddp_same_seed_same_run_and_resume(tmp_path):
    common = ["experiment=nbody_charged_geotdm_small", f"data.path={tmp_path / 'nb'}", "data.num_train=32",
              "data.num_val=8", "data.num_test=8", "data.batch_size=8", "model.hidden=16",
              "model.num_layers=2",
              "scheduler.num_train_timesteps=20", "module.val_sample_every_n_epochs=0", *DDP]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    _ok(geodiff("train", *common, "trainer.max_steps=2", f"output_dir={a}"))
    _ok(geodiff("train", *common, "trainer.max_steps=2", f"output_dir={b}"))
    wa = load_file(str(a / "export" / "model" / "diffusion_pytorch_model.safetensors"))
    wb = load_file(str(b / "export" / "model" / "diffusion_pytorch_model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)  # same seed, same world size: the same run
    r = _ok(geodiff("train", *common, "trainer.max_steps=4", f"output_dir={a}",
                    f"ckpt_path={a / 'checkpoints' / 'last.ckpt'}"))  # fmt: skip
    assert "Restored all states" in r.stdout + r.stderr
    record = json.loads((a / "export" / "trajectories.json").read_text())["training"]
    assert record["global_step"] == 4
    s = _ok(geodiff("sample", f"ckpt={a / 'export'}", "num_systems=2", "samples_per_system=1",
                    "num_inference_steps=3", f"output={tmp_path / 't.npz'}"))  # fmt: skip
    assert "forecast 2 systems" in s.stdout


def test_registration_ddp(tmp_path):
    out = tmp_path / "run"
    _ok(geodiff("train", "experiment=registration_tudl_small", "data.models_dir=null",
                "data.procedural_fraction=1.0", "data.num_points=64", "data.train_pairs=16",
                "data.val_pairs=4", "data.batch_size=4", "model.dim=16", "model.attention_layers=1",
                "trainer.max_epochs=1", f"output_dir={out}", *DDP))  # fmt: skip
    assert (out / "export" / "registration.json").is_file()
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(64, 3))
    for name, p in (("a.xyz", pts), ("b.xyz", pts + 0.1)):
        (tmp_path / name).write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in p))
    _ok(geodiff("register", f"source={tmp_path / 'a.xyz'}", f"target={tmp_path / 'b.xyz'}",
                f"ckpt={out / 'export'}", f"output={tmp_path / 'pose.json'}"))  # fmt: skip
    assert (tmp_path / "pose.json").is_file()


@pytest.mark.parametrize("rank", [0, 1])
def test_rank_seed_gives_each_process_its_own_reproducible_stream(rank):
    """RankSeed in a 2-process world: process r reseeds with seed + r (the same draws every time it runs)."""
    import torch

    from geodiff.training.callbacks import RankSeed

    class World:
        world_size, global_rank = 2, rank

    draws = []
    for _ in range(2):
        RankSeed(7).on_train_start(World(), None)
        draws.append(torch.rand(3))
    torch.manual_seed(7 + (1 - rank))
    other = torch.rand(3)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], other)
