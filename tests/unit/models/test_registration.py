"""Registration network: exact Procrustes recovery, Sinkhorn with slack, SE(3) equivariance of the pose
prediction when source and target are moved independently, permutation invariance, invariance of the
features (rotations, reflections, translations), save/load, bad input; float64."""

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.manifolds import se3, so3
from geodiff.models.registration import RegistrationNet, denormalize_pose, normalize_pair, normalized_pose
from geodiff.nn.pointcloud import knn, local_geometry, log_sinkhorn, pairwise_distances, weighted_procrustes

D = torch.float64


def net(encoder="ppf"):
    torch.manual_seed(0)
    m = RegistrationNet(
        dim=16, encoder=encoder, num_neighbors=8, encoder_layers=1, attention_layers=1, heads=2
    )
    with torch.no_grad():  # move the zero-initialised time head off zero so tau/beta/slack depend on t
        m.time_mlp[-1].weight.normal_(0, 0.3)
    return m.double().eval()


def test_procrustes_recovers_a_known_transform_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 30, 3, dtype=D, generator=g)
    h = se3.random_pose((4,), 2.0, g, D)
    y = se3.apply(h, x)
    torch.testing.assert_close(weighted_procrustes(x, y), h, atol=1e-12, rtol=0)
    # outliers with zero weight are ignored
    w = torch.ones(4, 30, dtype=D)
    y_bad = y.clone()
    y_bad[:, :5] += 10 * torch.randn(4, 5, 3, dtype=D, generator=g)
    w[:, :5] = 0
    torch.testing.assert_close(weighted_procrustes(x, y_bad, w), h, atol=1e-12, rtol=0)
    # a reflected target still gives a proper rotation (det +1)
    r = weighted_procrustes(x, x * torch.tensor([1.0, 1.0, -1.0], dtype=D))[:, :3, :3]
    torch.testing.assert_close(torch.det(r), torch.ones(4, dtype=D))


def test_procrustes_gradients_are_finite():
    x = torch.randn(2, 20, 3, dtype=D)
    y = se3.apply(se3.random_pose((2,), dtype=D), x) + 0.01 * torch.randn(2, 20, 3, dtype=D)
    w = torch.rand(2, 20, dtype=D, requires_grad=True)
    weighted_procrustes(x, y, w).sum().backward()
    assert torch.isfinite(w.grad).all()


def test_sinkhorn_with_and_without_slack():
    logits = torch.randn(2, 7, 9, dtype=D)
    p = log_sinkhorn(logits, None, 200)
    torch.testing.assert_close(p.sum(1), torch.ones(2, 9, dtype=D), atol=1e-6, rtol=0)
    q = log_sinkhorn(logits, torch.zeros(2, 1, 1, dtype=D), 20)
    assert (q.sum(2) <= 1 + 1e-9).all() and (q.sum(1) <= 1 + 1e-9).all() and (q >= 0).all()


def test_pca_normals_of_a_plane():
    x = torch.randn(1, 50, 3, dtype=D) * torch.tensor([1.0, 1.0, 0.0], dtype=D)
    n, ext = local_geometry(x, knn(x, 8))
    torch.testing.assert_close(n[..., 2].abs(), torch.ones(1, 50, dtype=D))
    assert ext[..., 0].abs().max() < 1e-9


@pytest.mark.parametrize("encoder", ["ppf", "e3nn"])
def test_pose_prediction_is_se3_equivariant_and_permutation_invariant(encoder):
    m = net(encoder)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 40, 3, dtype=D, generator=g)
    y = torch.randn(2, 35, 3, dtype=D, generator=g)
    h = se3.random_pose((2,), 1.0, g, D)
    t = torch.tensor([3, 150])
    out = m(x, y, h, t)
    s, gt = se3.random_pose((2,), 2.0, g, D), se3.random_pose((2,), 2.0, g, D)
    ps, pt = torch.randperm(40, generator=g), torch.randperm(35, generator=g)
    moved = m(se3.apply(s, x)[:, ps], se3.apply(gt, y)[:, pt], gt @ h @ se3.inverse(s), t)
    torch.testing.assert_close(moved["pose"], gt @ out["pose"] @ se3.inverse(s), atol=1e-9, rtol=0)
    torch.testing.assert_close(moved["weights"], out["weights"][:, ps], atol=1e-9, rtol=0)
    # different diffusion steps give different predictions (the step conditions the matching)
    assert not torch.allclose(
        m(x, y, h, torch.tensor([0, 0]))["pose"], m(x, y, h, torch.tensor([199, 199]))["pose"]
    )


def test_translation_equivariance_at_round_off_with_a_sharp_matching():
    """Points whose soft-correspondence weight falls below 1e-9 (a sharp matching leaves some unmatched)
    still get their correspondence in the target's frame: translating the target moves the pose to float64
    round-off (a clamp of the weight at 1e-9 used to leave errors of 2e-9 here)."""
    m = net("ppf")
    with torch.no_grad():
        m.time_mlp[-1].bias[1] = 10.0  # beta ~ 10: weights from ~1e-38 to 0.3
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 40, 3, dtype=D, generator=g), torch.randn(2, 35, 3, dtype=D, generator=g)
    h, t = se3.random_pose((2,), 1.0, g, D), torch.tensor([3, 150])
    out = m(x, y, h, t)
    assert int((out["weights"] < 1e-9).sum()) > 0
    gt = torch.eye(4, dtype=D).repeat(2, 1, 1)
    gt[:, :3, 3] = torch.tensor([3.0, -2.0, 1.0], dtype=D)
    moved = m(x, se3.apply(gt, y), gt @ h, t)
    torch.testing.assert_close(moved["pose"], gt @ out["pose"], atol=1e-13, rtol=0)


def test_pairwise_distances_do_not_depend_on_where_the_points_are():
    """Distances from point differences: a cloud 1 km from the origin keeps its distances and neighbours to
    round-off (cdist's default matrix-product form is off by ~3e-5 there)."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(1, 64, 3, dtype=D, generator=g)
    far = x + 1000.0
    torch.testing.assert_close(pairwise_distances(far, far), pairwise_distances(x, x), atol=1e-12, rtol=0)
    assert torch.equal(knn(far, 8), knn(x, 8))


@pytest.mark.parametrize("encoder", ["ppf", "e3nn"])
def test_features_are_invariant_to_rotations_reflections_and_translations(encoder):
    m = net(encoder)
    x, y = torch.randn(1, 30, 3, dtype=D), torch.randn(1, 30, 3, dtype=D)
    a, b = m.encode(x, y)
    q = so3.random_rotation((), dtype=D) @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=D))
    a2, b2 = m.encode(x @ q.T + 1.5, y @ q.T - 2.0)
    torch.testing.assert_close(a2, a, atol=1e-9, rtol=0)
    torch.testing.assert_close(b2, b, atol=1e-9, rtol=0)


def test_cached_features_match_forward_and_save_load(tmp_path):
    m = net()
    x, y = torch.randn(1, 30, 3, dtype=D), torch.randn(1, 25, 3, dtype=D)
    h, t = se3.identity((1,), D), torch.tensor([10])
    full = m(x, y, h, t)["pose"]
    torch.testing.assert_close(m.match(m.encode(x, y), x, y, h, t)["pose"], full)
    m.save_pretrained(tmp_path)
    back = RegistrationNet.from_pretrained(tmp_path).double().eval()
    torch.testing.assert_close(back(x, y, h, t)["pose"], full)


def test_bad_input_is_reported():
    m = net()
    x = torch.randn(1, 20, 3, dtype=D)
    h, t = se3.identity((1,), D), torch.tensor([0])
    with pytest.raises(GeodiffValueError, match="NaN"):
        m(x.clone().fill_(float("nan")), x, h, t)
    with pytest.raises(GeodiffValueError, match="at least 3"):
        m(x[:, :2], x, h, t)
    with pytest.raises(GeodiffValueError, match="batch sizes"):
        m(x, x.repeat(2, 1, 1), h, t)
    with pytest.raises(GeodiffValueError, match="encoder"):
        RegistrationNet(encoder="pointnet")


def test_normalisation_round_trip():
    x, y = torch.randn(3, 20, 3, dtype=D) * 5 + 2, torch.randn(3, 22, 3, dtype=D) * 5 - 7
    xs, ys, cs, ct, scale = normalize_pair(x, y)
    torch.testing.assert_close((ys**2).sum(-1).mean(-1), torch.ones(3, dtype=D))
    h = se3.random_pose((3,), dtype=D)
    hn = normalized_pose(h, cs, ct, scale)
    torch.testing.assert_close(denormalize_pose(hn, cs, ct, scale), h)
    # the normalised pose maps normalised source points where the original pose maps the originals
    torch.testing.assert_close(se3.apply(hn, xs), (se3.apply(h, x) - ct[:, None]) / scale.view(-1, 1, 1))
