"""Test helpers shipped with geodiff, reused by every family's tests."""

from geodiff.testing.equivariance import KINDS, Transform, assert_equivariant, random_transform
from geodiff.testing.schedulers import SchedulerTesterMixin

__all__ = ["assert_equivariant", "random_transform", "Transform", "KINDS", "SchedulerTesterMixin"]
