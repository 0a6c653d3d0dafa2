"""Orbit sweeps (NERO): the rotation grid covers the group evenly, an equivariant function shows round-off on
every orbit point, a non-equivariant one shows the structure its symmetry breaking predicts, in 3D and 2D."""

import math

import pytest
import torch

from geodiff.manifolds import so3
from geodiff.testing import assert_equivariant, mirror, orbit_errors, random_transform, rotation_grid

X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_rotation_grid():
    rot, axes, angles = rotation_grid(num_axes=10, num_angles=4)
    assert rot.shape == (40, 3, 3) and axes.shape == (40, 3) and angles.shape == (40,)
    torch.testing.assert_close(
        rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(40, 3, 3)
    )
    torch.testing.assert_close(so3.angle(rot), angles)
    torch.testing.assert_close(axes.norm(dim=-1), torch.ones(40, dtype=torch.float64))
    assert float(axes[::4].mean(0).norm()) < 0.25  # spread over the sphere (the mean of 10 even axes)
    assert float(angles.max()) == pytest.approx(math.pi)
    rot2, _, ang2 = rotation_grid(num_angles=5, dim=2)
    assert rot2.shape == (5, 2, 2) and float(ang2.max()) < 2 * math.pi
    with pytest.raises(ValueError, match="grid"):
        rotation_grid(num_angles=0)


def test_mirror_is_an_improper_orthogonal_map():
    for d in (2, 3):
        m = mirror(d)
        torch.testing.assert_close(m @ m.T, torch.eye(d, dtype=torch.float64))
        assert float(torch.linalg.det(m)) == -1.0 and float(m[0, 0]) == -1.0
    Q = random_transform(None, reflection=True, generator=torch.Generator().manual_seed(1)).Q
    assert float(torch.linalg.det(Q)) == pytest.approx(-1.0)


def test_equivariant_function_is_flat_on_the_orbit():
    sweep = orbit_errors(lambda x: x - x.mean(0), [X], ["node_vector"], ["node_vector"], 6, 5)
    assert sweep["max"] < 1e-14 and sweep["errors"]["output"].shape == (30,)
    assert assert_equivariant(lambda x: x - x.mean(0), [X], ["node_position"], ["node_vector"],
                              orbit=(6, 5))["orbit"] < 1e-14  # fmt: skip


def test_broken_symmetry_shows_its_structure():
    """f(x) = x + e (a fixed direction): at rotation Q the outputs differ by e - e Q^T (largest component
    reported), whose length is 2 sin(angle / 2) times the component of e off the rotation axis."""
    e = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    sweep = orbit_errors(lambda x: x + e, [X], ["node_vector"], ["node_vector"], 8, 4)
    axes, angles, err = sweep["axes"], sweep["angles"], sweep["errors"]["output"]
    rot, _, _ = rotation_grid(8, 4)
    diff = e - e @ rot.transpose(-1, -2)
    torch.testing.assert_close(err, diff.abs().amax(-1))
    off_axis = (1 - (axes @ e) ** 2).clamp_min(0).sqrt()
    torch.testing.assert_close(diff.norm(dim=-1), 2 * torch.sin(angles / 2) * off_axis)
    with pytest.raises(AssertionError, match="orbit: error"):
        assert_equivariant(lambda x: x + e, [X], ["node_vector"], ["node_vector"], atol=1e-3,
                           orbit=(8, 4))  # fmt: skip


def test_two_dimensional_orbits_and_reflections():
    x2 = X[:, :2]
    sweep = orbit_errors(lambda x: x * 2, [x2], ["node_vector"], ["node_vector"], num_angles=6, dim=2)
    assert sweep["max"] < 1e-14 and len(sweep["angles"]) == 6
    # a pseudo-vector map (cross product with z) is rotation- but not reflection-equivariant in 2D
    rot90 = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    assert orbit_errors(lambda x: x @ rot90.T, [x2], ["node_vector"], ["node_vector"], dim=2)["max"] < 1e-14
    assert orbit_errors(lambda x: x @ rot90.T, [x2], ["node_vector"], ["node_vector"], dim=2,
                        reflect=True)["max"] > 0.1  # fmt: skip
