"""diffusers-compatible schedulers, one algorithm per file.

| class | space | paper |
|---|---|---|
| :class:`E3DDPMScheduler` | zero-CoM R^3 coordinates | Ho et al. 2020; EDM; EQGAT-diff; GeoTDM |
| :class:`E3DDIMScheduler` | zero-CoM R^3 coordinates | Song et al. 2021 |
| :class:`E3FlowMatchScheduler` | zero-CoM R^3 coordinates (flow) | Lipman et al. 2023; Liu et al. 2023 |
| :class:`CategoricalD3PMScheduler` | atom types, charges, bonds | Austin et al. 2021; MiDi; EQGAT-diff |
| :class:`CategoricalFlowMatchScheduler` | atom types, charges, bonds (flow) | Campbell 2024; Gat 2024 |
| :class:`SE3DiffusionScheduler` | SE(3) poses via se(3) | Jiang et al. 2023 (registration) |
| :class:`SE3FlowMatchScheduler` | SO(3) x R^3 poses, geodesic flow | Yim et al. 2023; Bose et al. 2024 |
| :class:`SO3R3DiffusionScheduler` | SO(3) x R^3 frames, IGSO(3) | Yim et al. 2023 (FrameDiff) |

Each one saves and loads with ``save_pretrained`` / ``from_pretrained`` and is built from Hydra configs in
``configs/scheduler/``.
"""

from geodiff.schedulers.base import GeodiffSchedulerOutput, convert, load_scheduler, rescale
from geodiff.schedulers.composite import MoleculeSchedulers
from geodiff.schedulers.noise_schedules import make_alphas_cumprod
from geodiff.schedulers.scheduling_categorical_flow import CategoricalFlowMatchScheduler
from geodiff.schedulers.scheduling_d3pm import CategoricalD3PMScheduler
from geodiff.schedulers.scheduling_e3_ddim import E3DDIMScheduler
from geodiff.schedulers.scheduling_e3_ddpm import E3DDPMScheduler
from geodiff.schedulers.scheduling_e3_flow import E3FlowMatchScheduler
from geodiff.schedulers.scheduling_se3 import SE3DiffusionScheduler
from geodiff.schedulers.scheduling_se3_flow import SE3FlowMatchScheduler
from geodiff.schedulers.scheduling_so3r3 import SO3R3DiffusionScheduler

__all__ = [
    "GeodiffSchedulerOutput",
    "make_alphas_cumprod",
    "E3DDPMScheduler",
    "E3DDIMScheduler",
    "E3FlowMatchScheduler",
    "CategoricalD3PMScheduler",
    "CategoricalFlowMatchScheduler",
    "SE3DiffusionScheduler",
    "SE3FlowMatchScheduler",
    "SO3R3DiffusionScheduler",
    "MoleculeSchedulers",
    "convert",
    "load_scheduler",
    "rescale",
]
