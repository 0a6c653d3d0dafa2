"""Frame averaging (Puny et al. 2022) makes a plain, non-equivariant backbone equivariant (float64)."""

import pytest
import torch
from torch import nn

from geodiff.errors import GeodiffValueError
from geodiff.manifolds import so3
from geodiff.nn.frame_averaging import FrameAveraging, frame_average, pca_frames
from geodiff.nn.scatter import scatter_mean
from geodiff.testing import assert_equivariant


class Plain(nn.Module):
    """Raw coordinates through an MLP, with each system's mean as context: permutation-equivariant only."""

    def __init__(self, d: int):
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(nn.Linear(2 * d, 32), nn.Tanh(), nn.Linear(32, d + 1)).double()

    def forward(self, x, batch, num_graphs):
        pooled = scatter_mean(x, batch, num_graphs)[batch]
        out = self.mlp(torch.cat([x, pooled], -1))
        return x + out[..., :-1], out[..., -1:]  # a position and an invariant scalar


def _systems(d, sizes=(5, 7), frames=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    shape = (len(batch), frames, d) if frames else (len(batch), d)
    scale = torch.tensor([3.0, 1.5, 0.5][:d], dtype=torch.float64)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale, batch


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("frames", [None, 4])
def test_frame_averaged_plain_backbone_is_exactly_equivariant(d, frames):
    x, batch = _systems(d, frames=frames)
    net = Plain(d)
    fa = FrameAveraging(net, output_kinds=("position", "scalar"), group="E")

    kinds = ["node_position", "node_index"]
    if d == 3:
        worst = assert_equivariant(
            lambda x, b: fa(x, b, b, 2), [x, batch], kinds, ["node_position", "node_scalar"], atol=1e-9
        )
        assert set(worst) >= {"rotation", "reflection", "translation", "permutation"}
        with pytest.raises(AssertionError, match="rotation"):  # the backbone alone is not equivariant
            assert_equivariant(
                lambda x, b: net(x, b, 2),
                [x, batch],
                kinds,
                ["node_position", "node_scalar"],
                reflections=False,
                translations=False,
                permutations=False,
            )
    else:
        for angle, flip in [(0.7, 1.0), (2.1, -1.0), (-1.3, -1.0)]:
            a = torch.tensor(angle, dtype=torch.float64)
            rot = torch.stack([torch.stack([a.cos(), -a.sin()]), torch.stack([a.sin(), a.cos()])])
            Q = rot @ torch.diag(torch.tensor([1.0, flip], dtype=torch.float64))
            t = torch.tensor([0.3, -2.0], dtype=torch.float64)
            perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
            p0, s0 = fa(x, batch, batch, 2)
            p1, s1 = fa((x @ Q.T + t)[perm], batch[perm], batch[perm], 2)
            torch.testing.assert_close(p1, (p0 @ Q.T + t)[perm], atol=1e-9, rtol=0)
            torch.testing.assert_close(s1, s0[perm], atol=1e-9, rtol=0)
    assert bool(pca_frames(x, batch).exact.all())


def test_se_frames_are_rotations_and_miss_reflections():
    x, batch = _systems(3)
    fr = pca_frames(x, batch, group="SE")
    assert fr.size == 4
    torch.testing.assert_close(torch.linalg.det(fr.rotations), torch.ones(4, 2, dtype=torch.float64))
    fa = FrameAveraging(Plain(3), output_kinds=("position", "scalar"), group="SE")
    kinds, outs = ["node_position", "node_index"], ["node_position", "node_scalar"]
    assert_equivariant(lambda x, b: fa(x, b, b, 2), [x, batch], kinds, outs, reflections=False)
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(lambda x, b: fa(x, b, b, 2), [x, batch], kinds, outs, rotations=False)
    assert pca_frames(x, batch, group="E").size == 8


def test_three_points_in_3d_are_a_generic_frame():
    """Fewer than d + 1 points: three points span a plane; the zero eigenvalue names the normal."""
    x = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.1, 0.0], [0.3, 1.0, 0.0]], dtype=torch.float64)
    batch = torch.zeros(3, dtype=torch.long)
    assert bool(pca_frames(x).exact.all())
    fa = FrameAveraging(Plain(3), output_kinds=("position", "scalar"))
    assert_equivariant(
        lambda x, b: fa(x, b, b, 1),
        [x, batch],
        ["node_position", "node_index"],
        ["node_position", "node_scalar"],
    )


def test_degenerate_axis_is_exact_on_its_circle_and_close_elsewhere():
    """Two points: the plane around their axis is covered by num_circle rotations."""
    x = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64) + 0.2
    batch = torch.zeros(2, dtype=torch.long)
    fr = pca_frames(x, num_circle=12)
    assert not bool(fr.exact.any()) and fr.size == 48  # 12 angles x 2 axis signs x 2 reflections
    fa = FrameAveraging(Plain(3), output_kinds=("position", "scalar"), num_circle=12)
    p0, _ = fa(x, batch, batch, 1)
    errs = []
    for angle in (2 * torch.pi / 12 * 5, 0.37):  # a circle angle, then one between
        Q = so3.exp(torch.tensor([0.0, 0.0, angle], dtype=torch.float64))
        c = x.mean(0)
        p1, _ = fa((x - c) @ Q.T + c, batch, batch, 1)
        errs.append(float(((p0 - c) @ Q.T + c - p1).detach().abs().max()))
    assert errs[0] < 1e-9  # exact on the frame's own rotations about the axis
    assert errs[1] < 0.05  # approximate in between (the backbone varies little over 30 degrees)


def test_single_point_and_isotropic_sets():
    """One point: every vector output averages to zero over the cube group (exact); a regular octahedron
    has an isotropic covariance and uses the 48 cube symmetries."""
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    fr = pca_frames(x)
    assert bool(fr.exact.all()) and fr.size == 48
    w = torch.ones(3, 3, dtype=torch.float64)
    out = frame_average(lambda p: torch.tanh(p @ w + 1), x, None, "vector", frames=fr)
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-12, rtol=0)
    octa = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    fr = pca_frames(octa, group="SE")
    assert fr.size == 24 and not bool(fr.exact.any())


def test_frames_are_orthogonal_and_weights_sum_to_one():
    x, batch = _systems(3, sizes=(4, 2, 1, 6))
    fr = pca_frames(x, batch, group="E")
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(fr.rotations.transpose(-1, -2) @ fr.rotations, eye.expand_as(fr.rotations))
    torch.testing.assert_close(fr.weights.sum(0), torch.ones(4, dtype=torch.float64))
    assert fr.exact.tolist() == [True, False, True, True]  # the pair is axial; one point is exact


def test_bad_input():
    x, batch = _systems(3)
    with pytest.raises(GeodiffValueError, match="group"):
        pca_frames(x, batch, group="O")
    with pytest.raises(GeodiffValueError, match="num_circle"):
        pca_frames(x, batch, num_circle=0)
    with pytest.raises(GeodiffValueError, match="2D or 3D"):
        pca_frames(torch.randn(4, 5), None)
