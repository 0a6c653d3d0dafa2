"""N-body simulators in 3D (NRI / EGNN protocol), vectorised over many systems in NumPy.

Three interaction laws, each integrated with semi-implicit Euler at ``dt = 0.001`` and saved every
``sample_freq`` steps (5,000 steps saved every 100 gives 49 frames, the NRI/EGNN layout):

* ``charged`` (Kipf et al. 2018; Satorras et al. 2021): 5 particles, charges uniform in {-1, +1},
  ``F_i = sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3``, force components clipped to +-100 (0.1 / dt);
  positions ``N(0, 1)``, initial velocities of random direction and speed 0.5.
* ``springs``: every pair joined by a spring with probability 1/2, Hooke force ``-0.1 (x_i - x_j)``;
  positions ``N(0, 0.5^2)``.
* ``gravity`` (as used by EqMotion / GeoTDM): 10 unit-mass bodies, ``G = 1``, softening 0.1.

No walls: EGNN moved NRI's 2D box simulation to 3D free space (``box_size=None``); an NRI-style reflecting
box of half-width ``box_size`` is available. All systems of one call are integrated together (arrays
``[S, N, 3]``), so thousands of simulations take seconds.

The files ``geodiff data nbody`` writes are npz with ``loc`` and ``vel`` ``[S, frames, N, 3]`` and the
per-system interaction parameters: ``charges`` ``[S, N]`` (charged), ``edges`` ``[S, N, N]`` (springs,
0/1) or ``masses`` ``[S, N]`` (gravity), plus ``kind``, ``dt``, ``sample_freq`` and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from geodiff.errors import GeodiffValueError

__all__ = ["NBodyConfig", "simulate", "NBODY_KINDS", "DEFAULTS"]

NBodyKind = Literal["charged", "springs", "gravity"]
NBODY_KINDS = ("charged", "springs", "gravity")


@dataclass(frozen=True)
class NBodyConfig:
    kind: NBodyKind = "charged"  # charged particles (Coulomb), springs (Hooke) or gravity (Newton)
    num_particles: int = 5
    num_steps: int = 5000  # leapfrog steps; a frame is kept every ``sample_freq`` of them
    sample_freq: int = 100
    dt: float = 0.001  # step length; forces are clipped at 0.1 / dt
    loc_std: float = 1.0  # initial positions ~ N(0, loc_std^2)
    vel_norm: float = 0.5  # initial speed of every particle
    interaction_strength: float = 1.0  # charge product / spring constant / G multiplier
    softening: float = 0.1  # gravity's softening length
    box_size: float | None = None  # elastic walls at +-box_size (None: open space)

    @property
    def num_frames(self) -> int:
        return self.num_steps // self.sample_freq - 1


DEFAULTS = {
    "charged": NBodyConfig("charged", 5, loc_std=1.0, interaction_strength=1.0),
    "springs": NBodyConfig("springs", 5, loc_std=0.5, interaction_strength=0.1),
    "gravity": NBodyConfig("gravity", 10, loc_std=1.0, interaction_strength=1.0, softening=0.1),
}


def _forces(kind: str, loc: np.ndarray, params: np.ndarray, cfg: NBodyConfig) -> np.ndarray:
    """Accelerations (unit masses: forces) ``[S, N, 3]`` on every particle of every system (``params``:
    charges, edges or masses)."""
    diff = loc[:, :, None, :] - loc[:, None, :, :]  # x_i - x_j, [S, N, N, 3]
    d2 = np.einsum("sijk,sijk->sij", diff, diff)
    if kind == "charged":
        # (q_i q_j) / |x_i - x_j|^3 with the diagonal (i = j) set to zero via params (precomputed qq)
        i = np.arange(loc.shape[1])
        d2[:, i, i] = 1.0
        coef = params / (d2 * np.sqrt(d2))
        f = cfg.interaction_strength * np.einsum("sij,sijk->sik", coef, diff)
        max_f = 0.1 / cfg.dt
        return np.clip(f, -max_f, max_f, out=f)
    if kind == "springs":
        return -cfg.interaction_strength * np.einsum("sij,sijk->sik", params, diff)
    # gravity (acceleration): a_i = G sum_j m_j (x_j - x_i) / (|x_i - x_j|^2 + soft^2)^1.5
    d2 += cfg.softening**2
    coef = params / (d2 * np.sqrt(d2))
    return -cfg.interaction_strength * np.einsum("sij,sijk->sik", coef, diff)


def _reflect(loc: np.ndarray, vel: np.ndarray, box: float | None) -> tuple[np.ndarray, np.ndarray]:
    if box is None:
        return loc, vel
    over, under = loc > box, loc < -box
    loc = np.where(over, 2 * box - loc, np.where(under, -2 * box - loc, loc))
    vel = np.where(over | under, -vel, vel)
    return loc, vel


def simulate(
    num_systems: int,
    cfg: NBodyConfig | NBodyKind = "charged",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Simulate ``num_systems`` independent systems; returns ``loc``/``vel`` ``[S, frames, N, 3]`` and the
    interaction parameters (``charges``, ``edges`` or ``masses``), float64."""
    if isinstance(cfg, str):
        if cfg not in DEFAULTS:
            raise GeodiffValueError(f"kind: unknown N-body system {cfg!r} (charged, springs or gravity)")
        cfg = DEFAULTS[cfg]
    if cfg.kind not in NBODY_KINDS:
        raise GeodiffValueError(f"kind: unknown N-body system {cfg.kind!r} (charged, springs or gravity)")
    if num_systems <= 0 or cfg.num_particles < 2:
        raise GeodiffValueError(
            f"need at least one system of at least 2 particles, got {num_systems} x {cfg.num_particles}"
        )
    if cfg.num_frames < 1:
        raise GeodiffValueError(f"num_steps {cfg.num_steps} / sample_freq {cfg.sample_freq} saves no frame")
    rng = np.random.default_rng(seed)
    S, N = num_systems, cfg.num_particles
    out: dict[str, np.ndarray] = {}
    if cfg.kind == "charged":
        params = rng.choice(np.array([-1.0, 1.0]), size=(S, N))
        out["charges"] = params
    elif cfg.kind == "springs":
        upper = np.triu(rng.random((S, N, N)) < 0.5, k=1)
        params = (upper | upper.transpose(0, 2, 1)).astype(np.float64)
        out["edges"] = params
    else:
        params = np.ones((S, N))
        out["masses"] = params
    loc = rng.standard_normal((S, N, 3)) * cfg.loc_std
    vel = rng.standard_normal((S, N, 3))
    vel *= cfg.vel_norm / np.linalg.norm(vel, axis=-1, keepdims=True)
    frames = cfg.num_frames
    off = 1.0 - np.eye(N)
    if cfg.kind == "charged":  # q_i q_j, zero on the diagonal
        pair = params[:, :, None] * params[:, None, :] * off
    elif cfg.kind == "springs":
        pair = params * off
    else:  # m_j, zero on the diagonal
        pair = np.broadcast_to(params[:, None, :], (S, N, N)) * off
    locs = np.empty((S, frames, N, 3))
    vels = np.empty((S, frames, N, 3))
    from tqdm import tqdm

    bar = tqdm(total=cfg.num_steps, desc=f"simulating {S} {cfg.kind} systems", disable=not progress,
               miniters=max(1, cfg.num_steps // 50))  # fmt: skip
    # semi-implicit Euler: v += dt F(x); x += dt v (NRI's leapfrog-style ordering)
    vel = vel + cfg.dt * _forces(cfg.kind, loc, pair, cfg)
    saved = 0
    for step in range(1, cfg.num_steps):
        loc = loc + cfg.dt * vel
        loc, vel = _reflect(loc, vel, cfg.box_size)
        if step % cfg.sample_freq == 0:
            locs[:, saved], vels[:, saved] = loc, vel
            saved += 1
        vel = vel + cfg.dt * _forces(cfg.kind, loc, pair, cfg)
        bar.update(1)
    bar.update(1)
    bar.close()
    out["loc"], out["vel"] = locs[:, :saved], vels[:, :saved]
    if not np.isfinite(out["loc"]).all():
        raise GeodiffValueError(f"{cfg.kind} simulation diverged (non-finite positions); lower dt")
    return out
