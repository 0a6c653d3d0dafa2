"""Test helpers shipped with geodiff, reused by every family's tests."""

from geodiff.testing.equivariance import (
    KINDS,
    Transform,
    assert_equivariant,
    orbit_errors,
    random_transform,
    rotation_grid,
)
from geodiff.testing.schedulers import SchedulerTesterMixin

__all__ = ["assert_equivariant", "orbit_errors", "random_transform", "rotation_grid", "Transform", "KINDS",
           "SchedulerTesterMixin"]  # fmt: skip
