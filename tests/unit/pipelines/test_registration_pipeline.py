"""Registration pipeline (reverse SE(3) diffusion, one-shot), ICP baselines, the training loss and the
benchmark runner: shapes, seeding, exact recovery where the algorithm guarantees it, bad input."""

import numpy as np
import pytest
import torch

from geodiff.data.datamodules import PairDataset
from geodiff.data.pairs import PairConfig, benchmark_pairs
from geodiff.data.pointclouds import PointCloud
from geodiff.data.shapes import procedural_mesh
from geodiff.errors import GeodiffError, GeodiffValueError
from geodiff.models.registration import RegistrationNet
from geodiff.pipelines.icp import icp
from geodiff.pipelines.registration import RegistrationPipeline, plot_registration
from geodiff.pipelines.registration_benchmark import evaluate_registration, format_registration_table
from geodiff.schedulers import SE3DiffusionScheduler
from geodiff.training.registration import registration_loss


def pipeline():
    torch.manual_seed(0)
    m = RegistrationNet(dim=16, num_neighbors=8, encoder_layers=1, attention_layers=1, heads=2)
    return RegistrationPipeline(m, SE3DiffusionScheduler(prediction_type="sample"), {"num_points": 128})


def pairs(n=3, **kw):
    rng = np.random.default_rng(0)
    objs = [{"mesh": procedural_mesh(rng), "diameter": 2.0, "name": f"s{i}"} for i in range(n)]
    return benchmark_pairs(objs, PairConfig(num_points=150, **kw), n, seed=0)


def test_register_shapes_seeding_subsampling_and_one_shot():
    pipe, ps = pipeline(), pairs()
    src, tgt = [p.source for p in ps], [p.target for p in ps]
    a = pipe(src, tgt, num_inference_steps=5, seed=1, progress=False).poses
    b = pipe(src, tgt, num_inference_steps=5, seed=1, progress=False).poses
    assert a.shape == (3, 4, 4) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    rrt = a[:, :3, :3] @ a[:, :3, :3].transpose(0, 2, 1)
    np.testing.assert_allclose(rrt, np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-5)
    one = pipe(src, tgt, one_shot=True, progress=False).poses
    assert one.shape == (3, 4, 4) and not np.allclose(one, a)
    # clouds of different sizes in one call are grouped
    mixed = pipe([src[0], src[1][:100]], [tgt[0], tgt[1]], progress=False).poses
    assert mixed.shape == (2, 4, 4)


def test_refine_steps_are_clean_step_fixed_point_passes_on_top_of_the_reverse_process():
    """refine_steps=k equals the plain reverse process followed by k passes of the surrogate at t = 0, each
    from the previous estimate (in normalised coordinates); refine_steps=0 is the plain process."""
    from geodiff.models.registration import denormalize_pose, normalize_pair, normalized_pose

    pipe, ps = pipeline(), pairs()
    src, tgt = [p.source for p in ps], [p.target for p in ps]
    kw = {"seed": 4, "progress": False, "max_points": 1000}  # no subsampling: compare on the same points
    raw = pipe(src, tgt, 5, refine_steps=0, **kw).poses
    ref2 = pipe(src, tgt, 5, refine_steps=2, **kw).poses
    assert not np.allclose(raw, ref2)
    s = torch.as_tensor(np.stack(src), dtype=torch.float32)
    t = torch.as_tensor(np.stack(tgt), dtype=torch.float32)
    with torch.no_grad():
        sn, tn, cs, ct, scale = normalize_pair(s, t)
        feats = pipe.model.encode(sn, tn)
        h = normalized_pose(torch.as_tensor(raw, dtype=torch.float32), cs, ct, scale)
        for _ in range(2):
            h = pipe.model.match(feats, sn, tn, h, torch.zeros(3, dtype=torch.long))["pose"]
        manual = denormalize_pose(h, cs, ct, scale).double().numpy()
    np.testing.assert_allclose(ref2, manual, atol=2e-4)
    # the one-shot estimate is refined the same way
    one = pipe(src, tgt, one_shot=True, progress=False, refine_steps=0).poses
    one1 = pipe(src, tgt, one_shot=True, progress=False, refine_steps=1).poses
    assert not np.allclose(one, one1)
    for bad in (-1, 1.5, True):
        with pytest.raises(GeodiffValueError, match="refine_steps"):
            pipe(src, tgt, progress=False, refine_steps=bad).poses


def test_register_rejects_bad_input():
    pipe, p = pipeline(), pairs(1)[0]
    with pytest.raises(GeodiffValueError, match="empty"):
        pipe([], [], progress=False).poses
    with pytest.raises(GeodiffValueError, match="identical"):
        pipe([np.ones((50, 3))], [p.target], progress=False).poses
    bad = p.source.copy()
    bad[3, 1] = np.nan
    with pytest.raises(GeodiffValueError, match=r"source\[0\].*NaN"):
        pipe([bad], [p.target], progress=False).poses
    with pytest.raises(GeodiffValueError, match="at least 3"):
        pipe([p.source[:2]], [p.target], progress=False).poses
    with pytest.raises(GeodiffValueError, match="2 sources but 1 targets"):
        pipe([p.source, p.source], [p.target], progress=False).poses
    with pytest.raises(GeodiffValueError, match="prediction_type"):
        RegistrationPipeline(pipe.model, SE3DiffusionScheduler(prediction_type="left_correction"))


def test_from_pretrained_round_trip_and_wrong_family(tmp_path):
    pipe = pipeline()
    pipe.model.save_pretrained(tmp_path / "ckpt" / "model")
    pipe.scheduler.save_pretrained(tmp_path / "ckpt" / "scheduler")
    (tmp_path / "ckpt" / "registration.json").write_text(
        '{"family": "registration", "data": {"num_points": 64}}'
    )
    back = RegistrationPipeline.from_pretrained(tmp_path / "ckpt")
    assert back.num_points == 64
    (tmp_path / "mol").mkdir()
    (tmp_path / "mol" / "molecules.json").write_text("{}")
    with pytest.raises(GeodiffError, match="not a registration checkpoint.*molecules"):
        RegistrationPipeline.from_pretrained(tmp_path / "mol")


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane"])
def test_icp_converges_on_a_small_motion_of_an_identical_cloud(method):
    rng = np.random.default_rng(0)
    m = procedural_mesh(rng)
    from geodiff.data.shapes import euler_rotation, sample_surface

    x, _ = sample_surface(m.points, m.faces, 400, rng)
    h = np.eye(4)
    h[:3, :3], h[:3, 3] = euler_rotation(np.deg2rad([4, -3, 5])), [0.02, -0.01, 0.03]
    y = x @ h[:3, :3].T + h[:3, 3]
    est = icp(x, y, method, max_iterations=100)
    np.testing.assert_allclose(est, h, atol=1e-6)
    with pytest.raises(GeodiffError, match="icp method"):
        icp(x, y, "point_to_line")


def test_benchmark_runner_reports_every_method():
    ps = pairs(2, max_angle=10)
    res = evaluate_registration(ps, ["diffusion", "one_shot", "icp_point"], pipeline(), 3, progress=False)
    for m in ("diffusion", "one_shot", "icp_point"):
        s = res[m]["summary"]
        assert s["num_pairs"] == 2 and 0 <= s["rotation_recall_5deg"] <= 100 and s["seconds_per_pair"] > 0
    assert "icp_point" in format_registration_table(res)
    from geodiff.metrics.pose import rotation_error_deg

    before = rotation_error_deg(np.stack([np.eye(4)] * 2), np.stack([p.pose for p in ps])).mean()
    assert res["icp_point"]["summary"]["rotation_error_mean_deg"] < before  # ICP improves on the identity
    with pytest.raises(GeodiffError, match="needs a trained model"):
        evaluate_registration(ps, ["diffusion"], None, progress=False)
    with pytest.raises(GeodiffError, match="no pairs"):
        evaluate_registration([], ["icp_point"], progress=False)


def test_training_pairs_and_loss_backpropagates():
    ds = PairDataset([], length=4, num_points=64, procedural_fraction=1.0, seed=0)
    items = [ds[i] for i in range(4)]
    assert all(it["source"].shape == (64, 3) and it["target"].shape == (64, 3) for it in items)
    torch.testing.assert_close(ds[1]["target"], items[1]["target"])
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    pipe = pipeline()
    pipe.model.train()
    loss = registration_loss(pipe.model, pipe.scheduler, batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert all(torch.isfinite(p.grad).all() for p in pipe.model.parameters() if p.grad is not None)
    # the correspondence term adds a non-negative NLL of the true partners
    with_corr = registration_loss(
        pipe.model, pipe.scheduler, batch, torch.Generator().manual_seed(0), 1.0, 0.3
    )
    assert with_corr > loss.detach() and torch.isfinite(with_corr)
    with pytest.raises(GeodiffError, match="no object meshes"):
        PairDataset([], 4, procedural_fraction=0.5)


def test_plot_registration(tmp_path):
    p = pairs(1)[0]
    out = plot_registration(p.source, p.target, p.pose, tmp_path / "pair.png", title="test")
    assert out.stat().st_size > 1000


def test_point_cloud_dataclass_len():
    assert len(PointCloud(np.zeros((5, 3)))) == 5


def test_open3d_global_baselines_when_installed():
    from geodiff.pipelines.icp import open3d_available, open3d_global

    if not open3d_available():
        pytest.skip("open3d-cpu not installed (pip install -e '.[eval]')")
    p = pairs(1, max_angle=30)[0]
    for method in ("fgr", "ransac"):
        h = open3d_global(p.source, p.target, method)
        assert h.shape == (4, 4) and np.allclose(h[:3, :3] @ h[:3, :3].T, np.eye(3), atol=1e-6)
    with pytest.raises(GeodiffError, match="open3d method"):
        open3d_global(p.source, p.target, "teaser")
