"""Pure geometry with no parameters: Euclidean zero-CoM space, SO(3) (with IGSO(3)) and SE(3)."""

from geodiff.manifolds import euclidean, igso3, se3, so3

__all__ = ["euclidean", "igso3", "so3", "se3"]
