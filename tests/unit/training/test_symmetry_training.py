"""Symmetry as a training choice: augmentation moves every system rigidly; the soft-equivariance penalty is
zero for an equivariant denoiser and positive for the plain backbone; the automatic strength adjustment
follows the reference rule; a plain model trains with both through Lightning."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.schedulers import E3DDPMScheduler
from geodiff.training.symmetry import SoftEquivariance, augment_trajectories, random_element
from geodiff.training.trajectories import trajectory_loss
from tests.unit.models.test_geotdm import charged_batch, model

ROOT = Path(__file__).resolve().parents[3]


def test_augmentation_moves_each_system_rigidly():
    b = charged_batch(num_systems=3)
    a = augment_trajectories(b, ["rotation", "reflection", "translation"], torch.Generator().manual_seed(0))
    assert a.x.shape == b.x.shape and not torch.allclose(a.x, b.x)
    for s in range(3):  # distances between a system's particles within each frame are kept
        x, y = b.x[b.batch == s], a.x[a.batch == s]
        torch.testing.assert_close(torch.cdist(y.transpose(0, 1), y.transpose(0, 1)),
                                   torch.cdist(x.transpose(0, 1), x.transpose(0, 1)))  # fmt: skip
    assert torch.equal(a.h, b.h) and torch.equal(a.edge_index, b.edge_index)


@pytest.mark.parametrize("dim", [2, 3])
def test_random_elements(dim):
    g = torch.Generator().manual_seed(0)
    r = random_element("rotation", dim, 4, g)
    f = random_element("reflection", dim, 4, g)
    eye = torch.eye(dim, dtype=torch.float64)
    torch.testing.assert_close(r.Q @ r.Q.T, eye)
    assert torch.linalg.det(r.Q) > 0 > torch.linalg.det(f.Q)
    assert random_element("translation", dim, 4, g).t.abs().sum() > 0
    assert sorted(random_element("permutation", dim, 4, g).perm.tolist()) == [0, 1, 2, 3]


def _penalties(backbone):
    b = charged_batch()
    m = model(num_cond=4, num_target=8, backbone=backbone)
    sched = E3DDPMScheduler(num_train_timesteps=50)
    _, (func, inputs, kinds, outs) = trajectory_loss(
        m, b, sched, torch.Generator().manual_seed(0), details=True
    )
    soft = SoftEquivariance({"rotation": 1.0, "reflection": 1.0, "translation": 1.0, "permutation": 1.0})
    return soft.penalties(func, inputs, kinds, outs, 3, b.x.shape[0], torch.Generator().manual_seed(1))


def test_penalty_is_zero_for_the_equivariant_denoiser_and_not_for_the_plain_one():
    with torch.no_grad():
        egtn, plain = _penalties("egtn"), _penalties("plain")
    assert egtn.max() < 1e-20
    assert plain[:3].min() > 1e-6  # rotation, reflection, translation
    assert plain[3] < 1e-20  # a graph network is permutation-equivariant all the same


def test_strengths_adjust_once_by_the_reference_rule():  # smoothing=0: minima of the single draws
    soft = SoftEquivariance({"rotation": 1.0, "translation": 2.0, "reflection": 1.0}, adjust_at=3, warmup=1,
                            power=1.0, smoothing=0.0)  # fmt: skip
    soft.update(0, torch.tensor([100.0, 100.0, 100.0]))  # warm-up: not tracked
    soft.update(1, torch.tensor([4.0, 1.0, 2.0]))
    assert not soft.update(2, torch.tensor([5.0, 0.5, 3.0]))
    assert soft.update(3, torch.tensor([6.0, 6.0, 6.0]))  # adjusts with the minima (4, 0.5, 2)
    torch.testing.assert_close(soft.strengths, torch.tensor([1.0 / 8, 2.0, 1.0 / 4]))
    assert not soft.update(4, torch.tensor([0.1, 0.1, 0.1]))  # only once
    rec = soft.record()
    assert rec["adjusted"] and rec["penalty_ratio"]["rotation"] == pytest.approx(8.0)
    # smoothed (the default for training): the minima are of the moving average, not of lucky single draws
    soft = SoftEquivariance({"rotation": 1.0, "reflection": 1.0}, adjust_at=3, smoothing=0.5)
    for step, p in enumerate([[4.0, 4.0], [0.0, 4.0], [4.0, 4.0]]):  # one draw near the identity
        soft.update(step, torch.tensor(p))
    torch.testing.assert_close(soft.penalty_min, torch.tensor([2.0, 4.0]))  # averages 4, 2, 3: min 2, not 0
    assert soft.update(3, torch.tensor([4.0, 4.0])) and soft.record()["penalty_ratio"]["reflection"] == 2.0
    with pytest.raises(GeodiffValueError, match="decay"):
        SoftEquivariance({"rotation": 1.0}, smoothing=1.0)
    with pytest.raises(GeodiffValueError, match="unknown symmetry 'scale'"):
        SoftEquivariance({"scale": 1.0})


def test_plain_backbone_trains_with_augmentation_and_soft_equivariance(tmp_path):
    out = tmp_path / "run"
    tiny = ["model.hidden=8", "model.num_layers=1", "model.heads=2", "model.prior_layers=1",
            "model.time_dim=8", "scheduler.num_train_timesteps=20", "trainer.accelerator=cpu",
            "trainer.max_steps=3", "data.num_train=16", "data.num_val=4", "data.batch_size=8",
            "module.val_sample_every_n_epochs=0", "trainer.log_every_n_steps=1"]  # fmt: skip
    symmetry = [
        "model.backbone=plain",
        "module.augment=[rotation]",
        "module.soft_equivariance={rotation: 1.0, translation: 0.5}",
        "module.soft_equivariance_adjust_at=2",
    ]
    r = subprocess.run([sys.executable, "-m", "geodiff.cli", "train", "experiment=nbody_charged_geotdm_small",
                        f"data.path={tmp_path / 'nb'}", *tiny, *symmetry, f"output_dir={out}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "export" / "trajectories.json").read_text())
    soft = meta["training"]["soft_equivariance"]
    assert soft["adjusted"] and set(soft["strengths"]) == {"rotation", "translation"}
    assert meta["training"]["augment"] == ["rotation"]
    log = (out / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "train/equiv_rotation" in log and "train/strength_translation" in log
