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

from geodiff.errors import GeodiffError

__all__ = ["StrictLoadMixin", "WEIGHTS_NAME"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# name, and a function (state dict, config) -> the migrated state dict, or None where it does not apply
Migration = tuple[str, Callable[[dict, dict], dict | None]]


class StrictLoadMixin:
    """``from_pretrained`` for a diffusers ``ModelMixin`` + ``ConfigMixin`` denoiser: strict, safetensors
    only, with the class's ``MIGRATIONS`` applied to older exports (their names end up in
    ``model.migrations``)."""

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
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                     for label, names in (("missing", missing), ("unexpected", unexpected),
                                          ("wrong shape", wrong)) if names]  # fmt: skip
            raise GeodiffError(f"{where}: the weights do not fit the model's config ({'; '.join(parts)})")
        self.load_state_dict(state, strict=True)
