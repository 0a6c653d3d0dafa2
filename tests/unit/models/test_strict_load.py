"""Exported denoisers load strictly (safetensors only; every tensor present, nothing left over), older exports
through named migrations that change no output, and every parameter of every denoiser takes part in the
loss (DDP needs no search for unused parameters)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geodiff.errors import GeodiffError
from geodiff.models.base import WEIGHTS_NAME
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.models.registration import RegistrationNet

MOL = dict(s_dim=16, v_dim=4, e_dim=4, num_layers=2, rbf_dim=4, self_condition=True)
ROOT = Path(__file__).resolve().parents[3]
TRAJ = dict(hidden=16, num_layers=2, heads=2, time_dim=8, prior_layers=1, num_cond=4, num_target=3)


def _mol_inputs(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    return (torch.randn(n, 3, generator=g), torch.softmax(torch.randn(n, 5, generator=g), -1),
            torch.softmax(torch.randn(n, 6, generator=g), -1),
            torch.softmax(torch.randn(edge_index.shape[1], 5, generator=g), -1), torch.tensor([0.4]),
            torch.zeros(n, dtype=torch.long), edge_index)  # fmt: skip


def _old_eqgat_export(model, folder):
    """What an export of ``model`` looked like before the last layer lost its vector gate: ``w2`` and the
    gate rows present (random: they never reached the output)."""
    model.save_pretrained(folder)
    state = load_file(str(folder / WEIGHTS_NAME))
    last, c = f"layers.{model.config.num_layers - 1}.gated.", model.config
    state[last + "w2.weight"] = torch.randn(c.v_dim, c.v_dim)
    state[last + "mlp.2.weight"] = torch.cat([state[last + "mlp.2.weight"], torch.randn(c.v_dim, c.s_dim)])
    state[last + "mlp.2.bias"] = torch.cat([state[last + "mlp.2.bias"], torch.randn(c.v_dim)])
    save_file(state, str(folder / WEIGHTS_NAME))


def test_old_eqgat_export_loads_through_its_migration_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = EQGATDiffDenoiser(**MOL).eval()
    _old_eqgat_export(model, tmp_path / "old")
    loaded = EQGATDiffDenoiser.from_pretrained(tmp_path / "old")
    assert loaded.migrations == ["drop_last_vector_gate"]
    x = _mol_inputs()
    want, got = model(*x), loaded(*x)
    assert all(torch.equal(want[k], got[k]) for k in want)
    model.save_pretrained(tmp_path / "new")
    assert EQGATDiffDenoiser.from_pretrained(tmp_path / "new").migrations == []


def test_old_geotdm_export_loads_through_its_migration(tmp_path):
    torch.manual_seed(0)
    model = GeoTDMDenoiser(**TRAJ).eval()
    model.save_pretrained(tmp_path / "old")
    state = load_file(str(tmp_path / "old" / WEIGHTS_NAME))
    last = f"net.blocks.{TRAJ['num_layers'] - 1}.temporal."
    h = TRAJ["hidden"]
    state.update({last + "out.weight": torch.randn(h, h), last + "out.bias": torch.randn(h),
                  last + "ff_norm.weight": torch.ones(h), last + "ff_norm.bias": torch.zeros(h)})  # fmt: skip
    save_file(state, str(tmp_path / "old" / WEIGHTS_NAME))
    loaded = GeoTDMDenoiser.from_pretrained(tmp_path / "old")
    assert loaded.migrations == ["drop_last_feature_update"]
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_shipped_exports_load_strictly_through_the_named_migrations():
    mol = EQGATDiffDenoiser.from_pretrained(ROOT / "checkpoints/qm9_eqgat_small/model")
    assert mol.migrations == ["drop_last_vector_gate"]
    for name in ("nbody_charged_geotdm_small", "eth_ucy_eth_geotdm_small"):
        assert GeoTDMDenoiser.from_pretrained(ROOT / f"checkpoints/{name}/model").migrations == [
            "drop_last_feature_update"
        ]
    assert (
        RegistrationNet.from_pretrained(ROOT / "checkpoints/registration_tudl_small/model").migrations == []
    )


def test_missing_extra_or_misshapen_weights_and_no_safetensors_are_one_line_errors(tmp_path):
    torch.manual_seed(0)
    model = EQGATDiffDenoiser(**MOL)
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_NAME
    state = load_file(str(weights))

    def fails(folder, match):
        with pytest.raises(GeodiffError, match=match):
            EQGATDiffDenoiser.from_pretrained(folder)

    dropped = dict(state)
    dropped.pop("atom_embed.weight")
    save_file(dropped, str(weights))
    fails(tmp_path / "m", r"missing \['atom_embed.weight'\]")
    save_file({**state, "extra.weight": torch.zeros(2)}, str(weights))
    fails(tmp_path / "m", r"unexpected \['extra.weight'\]")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "num_layers": 3}))
    save_file(state, str(weights))
    fails(tmp_path / "m", "missing")  # a layer more in the config than in the weights
    shutil.copytree(tmp_path / "m", tmp_path / "bin")
    (tmp_path / "bin" / WEIGHTS_NAME).rename(tmp_path / "bin" / "diffusion_pytorch_model.bin")
    fails(tmp_path / "bin", "safetensors weights only")
    fails(tmp_path / "nowhere", "no config.json")


def _unused(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [n for n, p in model.named_parameters() if p.grad is None]


def test_every_parameter_takes_part_in_the_loss():
    torch.manual_seed(0)
    mol = EQGATDiffDenoiser(**MOL)
    x = _mol_inputs()
    first = mol(*x)  # no previous prediction: the self-conditioning weights run times zero
    assert _unused(mol, sum(v.square().mean() for v in first.values())) == []
    second = mol(*x, self_cond=mol.self_cond_from(first))
    assert _unused(mol, sum(v.square().mean() for v in second.values())) == []

    traj = GeoTDMDenoiser(**TRAJ)
    n, f = 5, TRAJ["num_cond"]
    g = torch.Generator().manual_seed(1)
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    x_cond = torch.randn(n, f, 3, generator=g)
    x_noisy = torch.randn(n, TRAJ["num_target"], 3, generator=g)
    h, ea, batch = torch.ones(n, 1), torch.ones(ei.shape[1], 1), torch.zeros(n, dtype=torch.long)
    prior = traj.prior(x_cond, h, ei, ea, batch, 1)
    out = traj(x_noisy + prior, torch.tensor([3]), h, ei, ea, batch, x_cond=x_cond)["eps"]
    assert _unused(traj, out.square().mean()) == []


@pytest.mark.parametrize("cls_name", ["EQGATDiffDenoiser", "EQGATReferenceDenoiser", "GeoTDMDenoiser",
                                      "PlainMoleculeDenoiser", "RegistrationNet"])  # fmt: skip
def test_positional_arguments_survive_from_config(cls_name):
    """diffusers marks positionally passed arguments as defaults and ``from_config`` dropped them: a small
    model built positionally came back at the default (large) size."""
    import inspect

    import geodiff.models as models

    cls = getattr(models, cls_name)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    small = {int: 3, bool: True}
    given = [small.get(type(p.default), p.default) for p in params]
    model = cls(*given)
    again = cls.from_config(model.config)
    expected = {p.name: v for p, v in zip(params, given, strict=True)}
    assert {p.name: again.config[p.name] for p in params} == expected
    assert sum(t.numel() for t in again.parameters()) == sum(t.numel() for t in model.parameters())
