"""Every GeoTDM experiment config composes, builds its model and module, and its data fits the model."""

import pytest

from geodiff.config import compose, instantiate
from tests.conftest import SHARED_DATA

EXPERIMENTS = ["nbody_charged_geotdm", "nbody_springs_geotdm", "nbody_gravity_geotdm",
               "nbody_charged_geotdm_uncond", "md17_geotdm", "eth_ucy_geotdm"]  # fmt: skip


@pytest.mark.parametrize("name", EXPERIMENTS + [e + "_small" for e in EXPERIMENTS])
def test_experiment_builds(name):
    cfg = compose("train", [f"experiment={name}", "data.path=unused"])
    model = instantiate(cfg.model)
    module = instantiate(cfg.module, model=model)
    c = model.config
    assert c.num_cond == cfg.data.num_cond and c.num_target == cfg.data.num_target
    assert module.scheduler_.config.center_of_mass == (c.num_cond == 0)
    assert module.scheduler_.config.prediction_type == c.prediction
    expect = {"md17": (4, 3, 3), "eth_ucy": (1, 1, 2)}.get(cfg.data.dataset, (1, 1, 3))
    assert (c.node_dim, c.edge_dim, c.dim) == expect
    T = module.scheduler_.config.num_train_timesteps
    assert T == cfg.scheduler.num_train_timesteps == (100 if cfg.data.dataset == "eth_ucy" else 1000)
    # CPU-sized forecasters predict x0 (README: it learns the forecast sooner); the paper sizes predict eps
    expect_pred = "sample" if name.endswith("_small") and c.num_cond > 0 else "epsilon"
    assert c.prediction == expect_pred


@pytest.mark.parametrize("kind", ["springs", "gravity"])
def test_nbody_kinds_fit_their_models(kind, tmp_path):
    cfg = compose("train", [f"experiment=nbody_{kind}_geotdm_small", f"data.path={tmp_path / kind}",
                            "data.num_train=2", "data.num_val=1", "data.num_test=1"])  # fmt: skip
    dm = instantiate(cfg.data)
    info = dm.describe()
    model = instantiate(cfg.model)
    assert (info["node_dim"], info["edge_dim"], info["dim"]) == (
        model.config.node_dim,
        model.config.edge_dim,
        3,
    )
    assert dm.split("train")[0].num_nodes == (10 if kind == "gravity" else 5)


@pytest.mark.skipif(not (SHARED_DATA / "eth_ucy").is_dir(), reason="../shared/data/eth_ucy not present")
def test_eth_ucy_data_fits_the_model():
    cfg = compose("train", ["experiment=eth_ucy_geotdm_small", f"data.path={SHARED_DATA / 'eth_ucy'}",
                            "data.scene=zara1", "data.limit=5", "data.val_limit=2"])  # fmt: skip
    info = instantiate(cfg.data).describe()
    assert (info["dim"], info["num_cond"], info["num_target"]) == (2, 8, 12)
