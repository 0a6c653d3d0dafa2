"""The EMA of the weights: warm-up for fresh models, the plain decay for warm starts, in every family."""

import pytest
import torch

from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.training.ema import ema_model
from geodiff.training.molecules import MoleculeDiffusionModule
from geodiff.training.trajectories import TrajectoryDiffusionModule


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def ema_after(ema, model, values):
    """Set the model's weight to each value in turn and update the EMA after each."""
    for v in values:
        with torch.no_grad():
            model.w.fill_(v)
            model.count += 1
        ema.update_parameters(model)
    return ema.module.w[0].item()


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_decay_with_and_without_warmup(warmup):
    model = Tiny()
    ema = ema_model(model, decay=0.9, warmup=warmup)
    assert not any(p.requires_grad for p in ema.parameters())
    # the first update copies the weights; the second blends with decay min(0.9, 2/11) or 0.9
    got = ema_after(ema, model, [1.0, 3.0])
    d = 2.0 / 11.0 if warmup else 0.9
    assert got == pytest.approx(d * 1.0 + (1 - d) * 3.0, rel=1e-12)
    assert int(ema.module.count) == 2  # integer buffers follow the model
    # far into the run the warm-up has reached the plain decay
    got = ema_after(ema, model, [0.0] * 200 + [1.0])
    assert got == pytest.approx(0.1, rel=1e-6)


def moved_ema(module):
    """The first EMA weight after two updates: the model's weights, then the weights + 1."""
    model, ema = module.model, module.ema
    ema.update_parameters(model)
    p0 = next(model.parameters()).detach().clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    return (next(ema.module.parameters()) - p0).flatten()[0].item()


def test_modules_warm_up_fresh_models_and_not_warm_starts(tmp_path):
    """A fresh run averages with the warm-up (decay 2/11 at the second update); a run from trained weights
    (``init_from``) uses the plain decay from the start, in the molecule and the trajectory modules."""
    mol_kw = dict(num_atom_types=5, num_charge_classes=6, num_bond_types=5, s_dim=8, v_dim=4, e_dim=4,
                  num_layers=1, rbf_dim=4)  # fmt: skip
    traj_kw = dict(hidden=8, num_layers=1, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=6)
    EQGATDiffDenoiser(**mol_kw).save_pretrained(tmp_path / "mol" / "model")
    GeoTDMDenoiser(**traj_kw).save_pretrained(tmp_path / "traj" / "model")
    cases = [
        (lambda init: MoleculeDiffusionModule(EQGATDiffDenoiser(**mol_kw), ema_decay=0.99, init_from=init),
         tmp_path / "mol"),
        (lambda init: TrajectoryDiffusionModule(GeoTDMDenoiser(**traj_kw), ema_decay=0.99, init_from=init),
         tmp_path / "traj"),
    ]  # fmt: skip
    for build, folder in cases:
        assert moved_ema(build(None)) == pytest.approx(1.0 - 2.0 / 11.0, rel=1e-5)
        assert moved_ema(build(str(folder))) == pytest.approx(0.01, rel=1e-3)
