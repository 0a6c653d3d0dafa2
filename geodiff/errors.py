"""Errors a user can cause. The CLI prints them as one line and exits with status 2.

``GeodiffValueError`` is also a ``ValueError``, so library callers can catch either.
"""

from __future__ import annotations

import torch

__all__ = [
    "GeodiffError",
    "GeodiffValueError",
    "check_finite",
    "check_shape",
    "check_positive_ints",
    "check_count",
    "first_line",
    "require_extra",
]


class GeodiffError(Exception):
    """Base class of every error geodiff raises for bad input."""


class GeodiffValueError(GeodiffError, ValueError):
    """An argument has the wrong shape, dtype, range or contains NaN/inf."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message (RDKit's and Hydra's run to many). A message that is empty
    or only whitespace gives ``default``, or the exception type's name when ``default`` is None."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ``GeodiffValueError`` naming ``name`` when ``x`` holds NaN or inf."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise GeodiffValueError(f"{name}: contains {bad} NaN/inf value(s) (shape {tuple(x.shape)})")


def check_shape(name: str, x: torch.Tensor, trailing: tuple[int, ...], min_dim: int | None = None) -> None:
    """Raise ``GeodiffValueError`` unless ``x`` ends with the dimensions ``trailing``."""
    if not isinstance(x, torch.Tensor):
        raise GeodiffValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    n = len(trailing)
    if x.dim() < max(n, min_dim or 0) or tuple(x.shape[x.dim() - n :]) != trailing:
        want = "[..., " + ", ".join(str(d) for d in trailing) + "]"
        raise GeodiffValueError(f"{name}: expected shape {want}, got {list(x.shape)}")


def _is_int_at_least(v, minimum: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= minimum


def check_positive_ints(prefix: str, **values) -> None:
    """Raise ``GeodiffValueError`` (``"<prefix>.<key>: must be a positive integer"``) for the first value
    that is not an integer >= 1 (hyperparameters such as layer counts and widths)."""
    for key, v in values.items():
        if not _is_int_at_least(v, 1):
            raise GeodiffValueError(f"{prefix}.{key}: must be a positive integer, got {v!r}")


def check_count(name: str, v, minimum: int = 0) -> int:
    """``v`` when it is an integer >= ``minimum`` (not a bool), else ``GeodiffValueError`` naming ``name``."""
    if not _is_int_at_least(v, minimum):
        raise GeodiffValueError(f"{name}: must be an integer >= {minimum}, got {v!r}")
    return v


def require_extra(what: str, extra: str, *modules: str) -> None:
    """One line naming the extra to install when a module ``what`` needs is missing, e.g.
    ``require_extra("docking", "docking", "vina", "meeko")``."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise GeodiffError(f"{what} needs {', '.join(missing)}: pip install 'geodiff[{extra}]'")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (see :func:`raise_on_sigterm`) so that ``finally`` blocks run:
    worker pools are stopped, temporary files removed."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in this process (the command line's handler exits 143 with one
    line). Processes forked from it later (data-loader workers) keep the default: SIGTERM ends them."""
    import os
    import signal

    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked child inherited this handler: behave as if it had none
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
