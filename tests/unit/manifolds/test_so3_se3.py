"""SO(3) / SE(3) maps: accuracy targets of the foundation issue, batching, gradients, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from geodiff.manifolds import se3, so3


def _twists(n, max_angle, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    special = torch.tensor([0.0, 1e-12, 1e-8, 1e-5, 1e-3, math.pi / 2, max_angle], dtype=torch.float64)
    ang = torch.cat([special, torch.rand(n - len(special), generator=g, dtype=torch.float64) * max_angle])
    v = 2 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return torch.cat([axis * ang[:, None], v], -1).to(dtype), ang


def test_float64_round_trip_to_1e10_up_to_pi_minus_1e6():
    xi, _ = _twists(5000, math.pi - 1e-6, torch.float64)
    T = se3.exp(xi)
    assert (se3.exp(se3.log(T)) - T).abs().max() < 1e-10
    R = T[..., :3, :3]
    assert (so3.exp(so3.log(R)) - R).abs().max() < 1e-10
    # log(exp(xi)) == xi as well while the angle is below pi
    assert (se3.log(T) - xi).abs().max() < 1e-8


def test_float32_round_trip_to_1e4_up_to_pi_minus_1e3():
    xi, _ = _twists(5000, math.pi - 1e-3, torch.float64)
    T = se3.exp(xi).to(torch.float32)
    assert (se3.exp(se3.log(T)) - T).abs().max() < 1e-4
    R = T[..., :3, :3]
    assert (so3.exp(so3.log(R)) - R).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exactly_zero_and_exactly_pi(dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    eye = torch.eye(3, dtype=dtype)
    assert so3.log(eye).abs().max() == 0
    assert (so3.exp(torch.zeros(3, dtype=dtype)) - eye).abs().max() == 0
    for axis in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [1.0, -2.0, 3.0]):
        a = torch.tensor(axis, dtype=torch.float64)
        a = a / a.norm()
        R = so3.exp(math.pi * a).to(dtype)
        w = so3.log(R)
        assert abs(float(w.norm()) - math.pi) < tol
        assert (so3.exp(w) - R).abs().max() < tol  # either axis sign is a valid log at pi
        T = se3.from_rt(R, torch.tensor([1.0, -2.0, 0.5], dtype=dtype))
        assert (se3.exp(se3.log(T)) - T).abs().max() < tol * 10


def test_matches_scipy():
    xi, _ = _twists(2000, math.pi - 1e-6, torch.float64)
    w = xi[:, :3]
    ref = torch.from_numpy(Rotation.from_rotvec(w.numpy()).as_matrix())
    torch.testing.assert_close(so3.exp(w), ref, atol=1e-13, rtol=0)
    back = torch.from_numpy(Rotation.from_matrix(ref.numpy()).as_rotvec())
    torch.testing.assert_close(so3.log(ref), back, atol=1e-9, rtol=0)


def test_hat_vee_and_exp_of_hat():
    v = torch.randn(10, 3, dtype=torch.float64)
    K = so3.hat(v)
    torch.testing.assert_close(K, -K.transpose(-1, -2))
    torch.testing.assert_close(so3.vee(K), v)
    u = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close((K @ u.unsqueeze(-1)).squeeze(-1), torch.linalg.cross(v, u))
    torch.testing.assert_close(so3.exp(v), torch.linalg.matrix_exp(K))
    xi = torch.randn(10, 6, dtype=torch.float64)
    M = torch.zeros(10, 4, 4, dtype=torch.float64)
    M[:, :3, :3] = so3.hat(xi[:, :3])
    M[:, :3, 3] = xi[:, 3:]
    torch.testing.assert_close(se3.exp(xi), torch.linalg.matrix_exp(M))


def test_exp_is_orthonormal_and_batched():
    v = torch.randn(4, 5, 3, dtype=torch.float64) * 3
    R = so3.exp(v)
    assert R.shape == (4, 5, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(4, 5, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4, 5, dtype=torch.float64))


def test_compose_inverse_apply():
    g = torch.Generator().manual_seed(0)
    a = se3.random_pose((7,), generator=g, dtype=torch.float64)
    b = se3.random_pose((7,), generator=g, dtype=torch.float64)
    pts = torch.randn(7, 11, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(se3.apply(se3.compose(a, b), pts), se3.apply(a, se3.apply(b, pts)))
    torch.testing.assert_close(se3.compose(a, se3.inverse(a)), se3.identity((7,), torch.float64))
    torch.testing.assert_close(se3.inverse(a), torch.linalg.inv(a))
    R, t = se3.to_rt(a)
    torch.testing.assert_close(se3.from_rt(R, t), a)


def test_left_jacobian_and_inverse():
    w = torch.cat([torch.zeros(1, 3), 1e-5 * torch.ones(1, 3), torch.randn(20, 3) * 1.5]).double()
    V = se3.left_jacobian(w)
    torch.testing.assert_close(
        V @ se3.left_jacobian_inverse(w), torch.eye(3, dtype=torch.float64).expand(22, 3, 3)
    )


def test_quaternions():
    q = torch.randn(100, 4, dtype=torch.float64)
    R = so3.quaternion_to_matrix(q)
    q2 = so3.matrix_to_quaternion(R)
    qn = q / q.norm(dim=-1, keepdim=True)
    qn = torch.where(qn[:, :1] < 0, -qn, qn)
    torch.testing.assert_close(q2, qn)


def test_gradients_are_finite_at_zero_and_match_finite_differences():
    for w0 in (torch.zeros(3), torch.tensor([0.3, -1.2, 0.7]), torch.tensor([1e-7, 0.0, 0.0])):
        w = w0.double().requires_grad_(True)
        so3.exp(w).sum().backward()
        assert torch.isfinite(w.grad).all()
    xi = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(se3.exp, (xi,))
    T = se3.exp(torch.randn(6, 6, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: se3.log(m), (T,))
    eye = torch.eye(3, dtype=torch.float64, requires_grad=True)
    so3.log(eye).sum().backward()
    assert torch.isfinite(eye.grad).all()


def test_random_rotation_is_uniform():
    R = so3.random_rotation((20000,), torch.Generator().manual_seed(0), torch.float64)
    ang = so3.angle(R).numpy()
    from scipy import stats

    assert stats.kstest(ang, lambda w: (w - np.sin(w)) / math.pi).pvalue > 0.001


def test_geodesic_distance():
    a = so3.random_rotation((5,), torch.Generator().manual_seed(0), torch.float64)
    w = torch.tensor([[0.0, 0.0, 0.3]], dtype=torch.float64).expand(5, 3)
    torch.testing.assert_close(
        so3.geodesic_distance(a, a @ so3.exp(w)), torch.full((5,), 0.3, dtype=torch.float64)
    )


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="v: expected shape"):
        so3.exp(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="R: expected shape"):
        so3.log(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="xi"):
        se3.exp(torch.zeros(5))
    with pytest.raises(ValueError, match="pose"):
        se3.log(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        so3.exp(torch.tensor([float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="pose: contains"):
        se3.log(torch.full((4, 4), float("nan")))
