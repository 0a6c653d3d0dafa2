"""Loading exported denoisers strictly, with named migrations of older exports.

diffusers' ``ModelMixin.from_pretrained`` loads what matches and warns about the rest, and falls back to
unsafe ``torch.load`` of a ``.bin`` file. geodiff's denoisers load through :class:`StrictLoadMixin` instead:
safetensors only, every tensor of the model present and nothing left over, or a one-line
:class:`~geodiff.errors.GeodiffError`. An export made before a change of construction (a tensor that is no
longer built) loads through a *named* migration, a function listed in the class's ``MIGRATIONS`` that
rewrites the old state dict exactly and says what it did; nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from geodiff.config import ExactConfigMixin
from geodiff.errors import GeodiffError

__all__ = ["StrictLoadMixin", "WEIGHTS_NAME"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# name, and a function (state dict, config) -> the migrated state dict, or None where it does not apply
Migration = tuple[str, Callable[[dict, dict], dict | None]]


def _check_config_fits_file(cls, config: dict, weights: Path, where: Path) -> None:
    """Before anything is allocated: a config that could not have produced the weights file is an error
    naming what does not fit (a corrupted or hostile config.json asking for 10^5 layers, a tensor the file
    lacks, holds in another shape or holds beyond the model, after the class's migrations)."""
    import math

    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # the header only
    tensors, elements = len(shapes), sum(math.prod(s) for s in shapes.values())
    for key, v in config.items():
        if isinstance(v, bool) or not isinstance(v, int):
            continue
        if ("layer" in key and v > tensors) or v > max(elements, 1):
            raise GeodiffError(f"{where}/config.json: {key}={v} cannot match the weights ({tensors} tensors, "
                               f"{elements:,} numbers); a damaged config")  # fmt: skip
    with torch.device("meta"):  # the model's shapes and the file's after its migrations, without memory
        model = cls.from_config(config)
        own = {k: tuple(t.shape) for k, t in model.state_dict().items()}
        state = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
        for _, migrate in cls.MIGRATIONS:
            state = migrate(state, dict(model.config)) or state
    _report_misfit(own, {k: tuple(t.shape) for k, t in state.items()}, set(state) - set(own), str(where))


def _report_misfit(own: dict, state: dict, extra: dict, where: str) -> None:
    """One line naming missing, unexpected (``extra``) and mis-shaped tensors, if any."""
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k]) != tuple(state[k]))
    unexpected = sorted(extra)
    if missing or unexpected or wrong:
        parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected),
                                      ("wrong shape", wrong)) if names]  # fmt: skip
        raise GeodiffError(f"{where}: the weights do not fit the model's config ({'; '.join(parts)})")


class StrictLoadMixin(ExactConfigMixin):
    """``from_pretrained`` for a diffusers ``ModelMixin`` + ``ConfigMixin`` denoiser: strict, safetensors
    only, with the class's ``MIGRATIONS`` applied to older exports (their names end up in
    ``model.migrations``); its config keeps positional arguments too."""

    MIGRATIONS: tuple[Migration, ...] = ()

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **_ignored):
        from safetensors.torch import load_file

        d = Path(directory)
        weights = d / WEIGHTS_NAME
        if not (d / "config.json").is_file():
            raise GeodiffError(f"{d}: not an exported model (no config.json)")
        if not weights.is_file():
            raise GeodiffError(f"{d}: no {WEIGHTS_NAME} (geodiff loads safetensors weights only)")
        try:
            config = cls.load_config(d)
            if config.get("_class_name", cls.__name__) != cls.__name__:
                raise GeodiffError(f"{d}: a {config['_class_name']} export, not a {cls.__name__}")
            _check_config_fits_file(cls, config, weights, d)
            model = cls.from_config(config)
            state = load_file(str(weights))
        except GeodiffError:
            raise
        except Exception as exc:  # a malformed config or weights file
            raise GeodiffError(f"{d}: unreadable model ({type(exc).__name__}: {exc})") from None
        applied = []
        for name, migrate in cls.MIGRATIONS:
            new = migrate(state, dict(model.config))
            if new is not None:
                state = new
                applied.append(name)
        model.load_state_dict_strict(state, str(d))
        model.migrations = applied
        return model.eval()

    def load_state_dict_strict(self, state: dict[str, torch.Tensor], where: str = "weights") -> None:
        """Load ``state`` with every tensor of the model present, in its shape, and nothing left over."""
        own = {k: tuple(t.shape) for k, t in self.state_dict().items()}
        shapes = {k: tuple(t.shape) for k, t in state.items()}
        _report_misfit(own, shapes, set(state) - set(own), where)
        self.load_state_dict(state, strict=True)
