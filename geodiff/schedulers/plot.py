"""Looking at a schedule: the numbers ``geodiff schedule`` prints and its plot (abar, noise level, log SNR
and, for SO(3) parts, the rotation noise)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from geodiff.io import save_figure

__all__ = ["describe_schedule", "plot_schedule"]


def describe_schedule(sched, inference_timesteps: torch.Tensor | None = None) -> list[str]:
    """Lines with T, the schedule, abar / SNR (and the rotation sigma) at five points, and the inference
    timesteps when given."""
    T = sched.config.num_train_timesteps
    abar = sched.alphas_cumprod
    lines = [
        f"  num_train_timesteps  {T}",
        f"  schedule             {getattr(sched.config, 'beta_schedule', '-')}",
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        i = min(T - 1, int(round(frac * (T - 1))))
        line = f"  t = {i:5d}   abar = {float(abar[i]):.6f}   SNR = {float(abar[i] / (1 - abar[i])):.4g}"
        if hasattr(sched, "sigmas"):  # flow matching: the noise level s; SO(3) x R^3: rotation sigma
            name = "s" if type(sched).__name__.endswith("FlowMatchScheduler") else "sigma_rot"
            line += f"   {name} = {float(sched.sigmas[i]):.4f}"
        lines.append(line)
    if inference_timesteps is not None:
        ts = inference_timesteps
        lines.append("  inference timesteps  " + ", ".join(str(int(x)) for x in ts[:12])
                     + (" ..." if len(ts) > 12 else ""))  # fmt: skip
    return lines


def plot_schedule(sched, path: str | os.PathLike, inference_timesteps: torch.Tensor | None = None) -> Path:
    """PNG of the schedule (written atomically); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = sched.config.num_train_timesteps
    t = torch.arange(T)
    abar = sched.alphas_cumprod
    panels = 3 if hasattr(sched, "sigmas") else 2
    fig, ax = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4))
    ax[0].plot(t, abar, label="abar_t")
    ax[0].plot(t, (1 - abar).sqrt(), label="sqrt(1 - abar_t) (noise std)")
    ax[0].set_xlabel("timestep t")
    ax[0].set_title(type(sched).__name__, fontsize=9)
    ax[1].plot(t, torch.log10(abar / (1 - abar)))
    ax[1].axhline(torch.log10(torch.tensor(1.5)), ls=":", c="gray", lw=0.8)
    ax[1].axhline(torch.log10(torch.tensor(0.05)), ls=":", c="gray", lw=0.8)
    ax[1].set_xlabel("timestep t")
    ax[1].set_ylabel("log10 SNR")
    ax[1].set_title("dotted: EQGAT-diff loss-weight clamp [0.05, 1.5]", fontsize=8)
    if inference_timesteps is not None:
        ts = inference_timesteps
        ax[0].plot(ts, abar[ts], "o", ms=3, c="k", label="inference steps")
    ax[0].legend(fontsize=8)
    if panels == 3:
        ax[2].plot(t, sched.sigmas)
        ax[2].set_xlabel("timestep t")
        flow = type(sched).__name__.endswith("FlowMatchScheduler")
        ax[2].set_ylabel("noise level s" if flow else "IGSO(3) sigma_t")
    return save_figure(fig, path, dpi=120)
