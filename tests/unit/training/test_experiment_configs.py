"""Experiments are recipes of overrides (lightning-hydra-template): the data, model, module and scheduler they
train with come from config groups, and every experiment composes into an instantiable whole."""

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from geodiff.config import compose, config_dir

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
GROUPS = ("datamodule", "model", "module", "scheduler")
PLACE = {"datamodule": "data"}  # the datamodule group fills the ``data`` key


def test_every_group_entry_names_what_it_builds():
    for group in GROUPS:
        entries = sorted((config_dir() / group).glob("*.yaml"))
        assert entries, group
        for p in entries:
            cfg = yaml.safe_load(p.read_text())
            assert "_target_" in cfg or group == "scheduler", p


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_is_overrides_of_the_groups(name):
    text = (config_dir() / "experiment" / f"{name}.yaml").read_text()
    raw = yaml.safe_load(text)
    assert "_target_" not in text, f"{name}: builds something itself instead of choosing a group entry"
    cfg = compose("train", [f"experiment={name}"])
    for group in GROUPS:
        assert cfg.get(PLACE.get(group, group)) is not None, f"{name}: no {group} config chosen"
    assert OmegaConf.select(cfg, "module.scheduler") is not None
    choices = [d for d in raw.get("defaults", []) if isinstance(d, dict)]
    names = {next(iter(d)) for d in choices} | {d for d in raw.get("defaults", []) if isinstance(d, str)}
    assert names, f"{name}: chooses no group entry and inherits no experiment"
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # every interpolation resolves


def test_a_group_can_be_swapped_from_the_command_line():
    cfg = compose("train", ["experiment=qm9_eqgat_small", "scheduler=eqgat_diff", "model.num_layers=2"])
    assert cfg.model.num_layers == 2 and cfg.model.s_dim == 128
    other = compose("train", ["experiment=qm9_eqgat_small", "datamodule=nbody", "model=geotdm",
                              "module=trajectories", "scheduler=geotdm_ddpm"])  # fmt: skip
    assert other.data.dataset == "nbody" and other.model.num_cond == other.data.num_cond
    assert Path(cfg.data.path).name == "test.npz"
