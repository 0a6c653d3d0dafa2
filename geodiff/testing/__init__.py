"""Test helpers shipped with geodiff, reused by every family's tests: ``assert_equivariant`` and its orbit
sweeps, the scheduler test mixin; ``geodiff.testing.nero`` (imported on demand) sweeps exported models
(``geodiff equivariance``)."""

from geodiff.testing.equivariance import (
    KINDS,
    Transform,
    assert_equivariant,
    mirror,
    orbit_errors,
    random_transform,
    rotation_grid,
    transform_errors,
)
from geodiff.testing.schedulers import SchedulerTesterMixin

__all__ = ["assert_equivariant", "mirror", "orbit_errors", "random_transform", "rotation_grid",
           "transform_errors", "Transform", "KINDS", "SchedulerTesterMixin"]  # fmt: skip
