"""The denoisers. Each is a diffusers ``ModelMixin`` + ``ConfigMixin`` (``save_pretrained`` to safetensors,
strict ``from_pretrained``), takes the noisy state and the diffusion time, returns a dict of predictions, and
is tested for equivariance in float64 with :func:`geodiff.testing.assert_equivariant`.

* :class:`EQGATDiffDenoiser` - molecules (EQGAT-diff): positions, atom types, charges, bonds.
* :class:`EQGATReferenceDenoiser` - the same job, the network as EQGAT-diff's reference code builds it.
* :class:`GeoTDMDenoiser` - trajectories (GeoTDM): EGTN + equivariant learnable prior.
* :class:`RegistrationNet` - SE(3) registration surrogate: invariant features, Sinkhorn, Procrustes.
* :class:`PlainMoleculeDenoiser` - the molecule job with no geometric constraint (the symmetry studies'
  control; tested to *fail* equivariance, and to pass it once frame-averaged).
"""

from geodiff.models.base import StrictLoadMixin
from geodiff.models.eqgat_diff import EQGATDiffDenoiser
from geodiff.models.eqgat_reference import EQGATReferenceDenoiser
from geodiff.models.geotdm import GeoTDMDenoiser
from geodiff.models.plain_molecules import PlainMoleculeDenoiser
from geodiff.models.registration import RegistrationNet

__all__ = ["EQGATDiffDenoiser", "EQGATReferenceDenoiser", "GeoTDMDenoiser", "PlainMoleculeDenoiser",
           "RegistrationNet", "StrictLoadMixin"]  # fmt: skip
