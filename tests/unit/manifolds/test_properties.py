"""Property-based checks (hypothesis) of the Lie-group maps on arbitrary rotation vectors and twists."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geodiff.errors import GeodiffValueError
from geodiff.manifolds import se3, so3

finite = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False, allow_infinity=False)
angles = st.one_of(
    st.sampled_from([0.0, 1e-15, 1e-9, 1e-4, 1e-3, math.pi - 1e-6, math.pi]),
    st.floats(min_value=0.0, max_value=math.pi),
)


@settings(max_examples=200, deadline=None)
@given(st.tuples(finite, finite, finite).filter(lambda a: any(abs(x) > 1e-12 for x in a)), angles,
       st.tuples(finite, finite, finite))  # fmt: skip
def test_round_trip_for_any_axis_angle_and_translation(axis, angle, v):
    a = torch.tensor(axis, dtype=torch.float64)
    w = a / a.norm() * angle
    xi = torch.cat([w, torch.tensor(v, dtype=torch.float64)])
    T = se3.exp(xi)
    assert (se3.exp(se3.log(T)) - T).abs().max() < 1e-9 * (1 + xi.abs().max())
    R = so3.exp(w)
    assert (R @ R.T - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-12
    assert abs(float(so3.log(R).norm()) - angle) < 1e-9


@settings(max_examples=100, deadline=None)
@given(st.tuples(finite, finite, finite, finite).filter(lambda q: sum(x * x for x in q) > 1e-6))
def test_log_angle_is_in_zero_pi_for_any_rotation(q):
    R = so3.quaternion_to_matrix(torch.tensor(q, dtype=torch.float64))
    w = so3.log(R)
    assert 0.0 <= float(w.norm()) <= math.pi + 1e-12
    assert (so3.exp(w) - R).abs().max() < 1e-10


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8))
def test_garbage_input_raises_only_geodiff_errors(values):
    x = torch.tensor(values, dtype=torch.float64)
    for fn in (so3.exp, so3.log, se3.exp, se3.log):
        try:
            fn(x)
        except GeodiffValueError:
            pass  # wrong shape (these are 1-D): must be our error, never an IndexError or a crash
