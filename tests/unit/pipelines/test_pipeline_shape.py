"""The one pipeline shape of the three families, on the shipped models: ``from_pretrained(name)`` from any
folder, ``.to(device)``, silenced progress bars, a replaceable scheduler, and ``__call__`` returning a typed
output (molecules -> RDKit / SDF, trajectories from plain arrays, registration of one pair or a batch)."""

import numpy as np
import pytest
import torch

from geodiff.errors import GeodiffError
from geodiff.pipelines import (
    MoleculeDiffusionPipeline,
    MoleculePipelineOutput,
    RegistrationPipeline,
    RegistrationPipelineOutput,
    TrajectoryDiffusionPipeline,
    TrajectoryPipelineOutput,
)
from geodiff.schedulers import E3DDIMScheduler, convert


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_molecule_quickstart_from_an_empty_folder(elsewhere, capsys):
    pipe = MoleculeDiffusionPipeline.from_pretrained("qm9_eqgat_small").to("cpu")
    out = pipe(num_samples=4, num_inference_steps=10, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MoleculePipelineOutput) and len(out) == 4
    mols = out.to_rdkit()
    assert len(mols) == 4 and any(m is not None for m in mols)
    assert all(m is None or m.GetNumConformers() == 1 for m in mols)
    out.write_sdf("m.sdf")
    assert (elsewhere / "m.sdf").read_text().count("$$$$") == 4
    again = pipe(num_samples=4, num_inference_steps=10, generator=torch.Generator().manual_seed(0))
    assert all(np.array_equal(a.pos, b.pos) for a, b in zip(out, again, strict=True))
    capsys.readouterr()
    pipe.set_progress_bar_config(disable=True)
    pipe(num_samples=2, num_inference_steps=3, seed=1)
    assert "sampling molecules" not in capsys.readouterr().err


def test_molecule_scheduler_is_replaceable(elsewhere):
    pipe = MoleculeDiffusionPipeline.from_pretrained("qm9_eqgat_small")
    by_name = pipe(num_samples=2, num_inference_steps=5, seed=3, sampler="ddim", progress=False)
    pipe.scheduler = convert(pipe.scheduler, E3DDIMScheduler, eta=0.0)
    assert isinstance(pipe.schedulers.pos, E3DDIMScheduler)
    swapped = pipe(num_samples=2, num_inference_steps=5, seed=3, progress=False)
    assert all(np.array_equal(a.pos, b.pos) for a, b in zip(by_name, swapped, strict=True))


def test_trajectories_from_arrays_with_the_features_the_export_names(elsewhere, tmp_path):
    pipe = TrajectoryDiffusionPipeline.from_pretrained("nbody_charged_geotdm_small").to("cpu")
    rng = np.random.default_rng(0)
    observed = rng.normal(size=(5, 10, 3))
    out = pipe(observed, charges=[1, -1, 1, -1, 1], num_samples=3, num_inference_steps=5, progress=False,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert isinstance(out, TrajectoryPipelineOutput) and out.trajectories.shape == (3, 5, 20, 3)
    two = pipe([observed, observed[:4]], charges=[[1, -1, 1, -1, 1], [1, 1, -1, -1]], num_samples=2,
               num_inference_steps=3, progress=False)  # fmt: skip
    assert two.trajectories.shape == (2, 9, 20, 3) and two.systems.num_graphs == 2
    saved = np.load(out.save(tmp_path / "t.npz"))
    assert saved["pred"].shape == (3, 5, 20, 3) and saved["observed"].shape == (5, 10, 3)
    assert out.plot(tmp_path / "t.png").is_file()
    with pytest.raises(GeodiffError, match=r"needs charges= with shape \[5\]"):
        pipe(observed, num_samples=1)
    with pytest.raises(GeodiffError, match="charges: need finite values of shape"):
        pipe(observed, charges=[1, -1], num_samples=1)
    eth = TrajectoryDiffusionPipeline.from_pretrained("eth_ucy_hotel_geotdm_small")
    walk = eth(rng.normal(size=(3, 8, 2)), num_samples=2, num_inference_steps=4, progress=False)
    assert walk.trajectories.shape == (2, 3, 12, 2)


def test_registration_one_pair_or_a_batch_numpy_or_torch(elsewhere):
    pipe = RegistrationPipeline.from_pretrained("registration_tudl_small").to("cpu")
    rng = np.random.default_rng(0)
    src = rng.normal(size=(200, 3))
    tgt = src + np.array([0.1, 0.0, -0.1])
    one = pipe(src, tgt, progress=False)
    assert isinstance(one, RegistrationPipelineOutput) and one.poses.shape == (1, 4, 4)
    torch_one = pipe(torch.as_tensor(src), torch.as_tensor(tgt), progress=False)
    np.testing.assert_allclose(one.poses, torch_one.poses, atol=1e-6)
    batch = pipe(np.stack([src, src]), np.stack([tgt, tgt]), progress=False)
    assert batch.poses.shape == (2, 4, 4) and np.asarray(batch).shape == (2, 4, 4)
    np.testing.assert_allclose(one.apply(src), src @ one[0][:3, :3].T + one[0][:3, 3])


@pytest.mark.parametrize(
    "cls", [MoleculeDiffusionPipeline, TrajectoryDiffusionPipeline, RegistrationPipeline]
)
def test_from_pretrained_names_the_shipped_models_and_the_family(cls, elsewhere):
    with pytest.raises(GeodiffError, match="checkpoint not found: nope .*qm9_eqgat_small"):
        cls.from_pretrained("nope")
    other = "registration_tudl_small" if cls is not RegistrationPipeline else "qm9_eqgat_small"
    with pytest.raises(GeodiffError, match="not a .* checkpoint"):
        cls.from_pretrained(other)
