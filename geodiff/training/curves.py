"""Training curves of ``geodiff train`` runs: read Lightning's CSV logs, summarise, plot.

A run folder (``output_dir`` of ``geodiff train``) holds ``lightning_logs/version_*/metrics.csv``; a run
resumed with ``ckpt_path=`` adds a new version whose steps continue the old ones. :func:`read_run` merges
the versions into one series per metric (a later version wins where steps overlap), :func:`summarise`
gives the first, last and best value of each, :func:`plot_runs` draws one panel per metric with every run
as a line (training losses smoothed by a moving average, the raw points faint behind).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from geodiff.errors import GeodiffError

__all__ = [
    "read_metrics_csv",
    "read_run",
    "summarise",
    "plot_runs",
    "default_metrics",
    "check_metrics",
    "lower_is_better",
    "curves_summary",
    "format_curves_summary",
]

# metrics where a larger value is better; every other metric is a loss or an error
_HIGHER_IS_BETTER = ("valid", "stab", "unique", "novel", "acc", "success", "connected")


def lower_is_better(name: str) -> bool:
    """Whether the best value of ``name`` is its minimum (losses, errors) or its maximum (validity, ...)."""
    leaf = name.rsplit("/", 1)[-1].lower()
    return not any(key in leaf for key in _HIGHER_IS_BETTER)


def read_metrics_csv(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One Lightning ``metrics.csv``: ``{metric: (steps, values)}`` with the empty cells of its sparse rows
    dropped and steps ascending. Columns ``step`` and ``epoch`` are bookkeeping, not metrics."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GeodiffError(f"{path}: cannot read training log ({exc})") from None
    if not rows or "step" not in rows[0]:
        raise GeodiffError(f"{path}: not a Lightning metrics.csv (no 'step' column or no rows)")
    series: dict[str, tuple[list[int], list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            step = int(float(row["step"]))
        except (TypeError, ValueError):
            raise GeodiffError(f"{path}:{line}: step {row['step']!r} is not a number") from None
        for key, cell in row.items():
            if key in ("step", "epoch") or key is None or cell in ("", None):
                continue
            try:
                value = float(cell)
            except ValueError:
                raise GeodiffError(f"{path}:{line}: {key} = {cell!r} is not a number") from None
            steps, values = series.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
    out = {}
    for key, (steps, values) in series.items():
        s, v = np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)
        order = np.argsort(s, kind="stable")
        out[key] = (s[order], v[order])
    return out


def _version_number(p: Path) -> int:
    try:
        return int(p.parent.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


# Lightning's monitor keys, logged by every geodiff module beside (or instead of) the namespaced names
_ALIASES = {"loss": "train/loss", "val_loss": "val/loss"}


def _canonical(metrics: dict) -> dict:
    """``loss`` / ``val_loss`` under their namespaced names (``train/loss``, ``val/loss``), once."""
    out = dict(metrics)
    for alias, name in _ALIASES.items():
        if alias in out:
            series = out.pop(alias)
            out.setdefault(name, series)
    return out


def read_run(run: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All versions of a run folder (or one ``metrics.csv``) merged: ``{metric: (steps, values)}``, with
    Lightning's ``loss`` / ``val_loss`` reported as ``train/loss`` / ``val/loss``."""
    run = Path(run)
    if not run.exists():
        raise GeodiffError(f"{run}: no such run folder")
    logs = run.glob("lightning_logs/version_*/metrics.csv") if run.is_dir() else [run]
    files = sorted(logs, key=_version_number)
    if not files:
        raise GeodiffError(f"{run}: no lightning_logs/version_*/metrics.csv (a geodiff train output_dir?)")
    merged: dict[str, dict[int, float]] = {}
    for f in files:  # in version order: a resumed run's later version overrides overlapping steps
        for key, (steps, values) in read_metrics_csv(f).items():
            merged.setdefault(key, {}).update(zip(steps.tolist(), values.tolist(), strict=True))
    out = {}
    for key, by_step in merged.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[key] = (steps, np.array([by_step[s] for s in steps.tolist()], dtype=np.float64))
    return _canonical(out)


def summarise(metrics: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """First, last and best value (with its step) of every metric, NaNs ignored."""
    out = {}
    for key, (steps, values) in sorted(metrics.items()):
        ok = np.isfinite(values)
        if not ok.any():
            continue
        s, v = steps[ok], values[ok]
        i = int(np.argmin(v) if lower_is_better(key) else np.argmax(v))
        out[key] = {
            "points": int(len(v)),
            "first": float(v[0]),
            "last": float(v[-1]),
            "last_step": int(s[-1]),
            "best": float(v[i]),
            "best_step": int(s[i]),
        }
    return out


def default_metrics(runs: dict[str, dict]) -> list[str]:
    """The metrics worth a panel: the training loss and every validation metric, in a stable order."""
    keys = sorted({k for metrics in runs.values() for k in metrics})
    train = [k for k in ("train/loss",) if k in keys]
    val = [k for k in keys if k.startswith("val/")]
    return train + val or keys


def check_metrics(runs: dict[str, dict], metrics: list[str]) -> None:
    """A one-line error naming the metrics no run has logged, and the ones they have."""
    missing = [m for m in metrics if not any(m in r for r in runs.values())]
    if missing:
        have = sorted({k for r in runs.values() for k in r})
        raise GeodiffError(f"metric(s) {', '.join(missing)} not in the logs (they have: {', '.join(have)})")


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 3:
        return values
    window = min(window, len(values))
    kernel = np.ones(window)
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid") / window


def plot_runs(
    runs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    output: str | os.PathLike,
    metrics: list[str] | None = None,
    smooth: int = 10,
    title: str | None = None,
) -> Path:
    """One panel per metric, each run a line against the optimizer step; written atomically to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import save_figure

    if not runs:
        raise GeodiffError("no runs to plot")
    metrics = list(metrics) if metrics else default_metrics(runs)
    check_metrics(runs, metrics)
    cols = 2 if len(metrics) in (2, 4) else min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat[: len(metrics)], metrics, strict=True):
        for j, (label, run) in enumerate(runs.items()):
            if name not in run:
                continue
            steps, values = run[name]
            c = colours[j % len(colours)]
            dense = len(values) > 3 * max(smooth, 1) and not name.startswith("val")
            if dense:
                ax.plot(steps, values, c=c, alpha=0.2, lw=0.7)
                ax.plot(steps, _smooth(values, smooth), c=c, lw=1.4, label=label)
            else:  # markers while the points are few enough to tell apart
                ax.plot(steps, values, "o-" if len(values) <= 60 else "-", c=c, ms=3, lw=1.2, label=label)
        ax.set_title(name + ("  (lower is better)" if lower_is_better(name) else "  (higher is better)"),
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, output)
    return Path(output)


def curves_summary(runs: list[str] | None, labels: list[str] | None = None,
                   metrics: list[str] | None = None) -> tuple[dict, dict]:  # fmt: skip
    """The logs of ``runs`` (run folders or ``metrics.csv`` files) under their ``labels`` (default: the
    folder names), checked to have ``metrics`` when given, and the first / last / best summary of each."""
    if not runs:
        raise GeodiffError("runs: give at least one run folder")
    labels = labels or [Path(r).name or r for r in runs]
    if len(labels) != len(runs):
        raise GeodiffError(f"labels: {len(labels)} labels for {len(runs)} runs")
    if len(set(labels)) != len(labels):
        raise GeodiffError(f"labels: not unique ({', '.join(labels)}); name the runs with labels=[...]")
    logs = {label: read_run(run) for label, run in zip(labels, runs, strict=True)}
    if metrics:
        check_metrics(logs, metrics)
    return logs, {label: summarise(m) for label, m in logs.items()}


def format_curves_summary(summary: dict) -> list[str]:
    """One block per run: first, last and best value (with its step) of every metric."""
    lines = []
    for label, rows in summary.items():
        lines.append(f"{label}")
        for name, r in rows.items():
            last = f"last {r['last']:.4g} (step {r['last_step']})"
            lines.append(
                f"  {name:24s} first {r['first']:.4g}  {last}  best {r['best']:.4g} (step {r['best_step']})"
            )
    return lines
