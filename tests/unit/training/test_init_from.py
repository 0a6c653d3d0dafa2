"""Warm starts from exported models (``module.init_from``) for the registration and trajectory modules."""

import pytest
import torch

from geodiff.errors import GeodiffError
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.models.registration import RegistrationNet
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
    with pytest.raises(GeodiffError, match="not an exported model"):
        RegistrationDiffusionModule(small_registration(), init_from=str(tmp_path / "nothing"))


def test_trajectory_module_warm_starts(tmp_path):
    kw = dict(hidden=8, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=6)
    torch.manual_seed(0)
    src = GeoTDMDenoiser(**kw)
    src.save_pretrained(tmp_path / "exp" / "model")
    torch.manual_seed(1)
    module = TrajectoryDiffusionModule(GeoTDMDenoiser(**kw), init_from=str(tmp_path / "exp"))
    for a, b in zip(module.model.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(a, b)
