"""Configs: compose Hydra configs from the config folder, resolve paths, build objects from ``_target_``.

This is the one place the library and the command line share for configuration, so that nothing under
``geodiff/`` imports :mod:`geodiff.cli`.

* :func:`config_dir` - the Hydra config folder (``$GEODIFF_CONFIG_DIR``, else ``configs/``).
* :func:`compose` - ``configs/<name>.yaml`` with Hydra overrides.
* :func:`build` - the object of one config group entry (``scheduler/eqgat_diff``), e.g. a paper's default.
* :func:`instantiate` - the object a config describes, with user errors as one-line :class:`GeodiffError` s.
* :func:`data_dir` - where datasets live: ``$GEODIFF_DATA``, else ``./data`` (the ``paths`` config group
  reads the same variable, so configs say ``${paths.data_dir}/qm9/...``).
* :func:`resolve_checkpoint` - an exported model folder: a path, or a shipped model by name.
* :func:`resolve_path` - a path as given, or relative to the project root (the repository's own files).
* :class:`ExactConfigMixin` - a diffusers config that keeps every ``__init__`` argument, positional ones too.
"""

from __future__ import annotations

import os
from pathlib import Path

from geodiff.errors import GeodiffError

__all__ = ["DATA_ENV", "ExactConfigMixin", "as_dict", "as_list", "build", "compose", "config_dir", "data_dir",
           "install_summary", "instantiate", "project_root", "resolve_checkpoint", "resolve_path", "shipped",
           "shipped_checkpoints"]  # fmt: skip

DATA_ENV = "GEODIFF_DATA"


class ExactConfigMixin:
    """Listed before diffusers' ``ConfigMixin``: the config keeps every ``__init__`` argument as given.

    diffusers' ``register_to_config`` lists the arguments passed *positionally* among the "default values
    used", and ``from_config(obj.config)`` then drops them (``CategoricalFlowMatchScheduler(5)`` rebuilt from
    its config: "missing num_classes"). A geodiff config always holds the values the object was built with
    (an older export's missing field takes the class default anyway), so nothing is marked as a default.
    """

    def register_to_config(self, **kwargs) -> None:
        kwargs.pop("_use_default_values", None)
        super().register_to_config(**kwargs)  # type: ignore[misc]


def project_root() -> Path:
    """The folder that holds ``geodiff/`` (the repository root in a source checkout)."""
    return Path(__file__).resolve().parent.parent


def shipped(name: str) -> Path:
    """``configs`` or ``checkpoints``: beside the package in a source checkout (``configs/``), inside it in an
    installed wheel (``geodiff/configs/``)."""
    here = Path(__file__).resolve().parent
    for path in (here.parent / name, here / name):
        if path.is_dir():
            return path
    return here / name


def config_dir() -> Path:
    """The Hydra config folder: ``$GEODIFF_CONFIG_DIR``, else the configs geodiff ships."""
    env = os.environ.get("GEODIFF_CONFIG_DIR")
    path = Path(env) if env else shipped("configs")
    if not path.is_dir():
        raise GeodiffError(f"config folder not found: {path} (set GEODIFF_CONFIG_DIR)")
    return path


def shipped_checkpoints() -> list[str]:
    """The names of the models geodiff ships (``qm9_eqgat_small``, ...)."""
    root = shipped("checkpoints")
    return sorted(p.name for p in root.iterdir() if (p / "model").is_dir()) if root.is_dir() else []


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """An exported model folder: a path (relative to the current folder) when it exists, else a shipped
    model by name (``qm9_eqgat_small``; ``checkpoints/qm9_eqgat_small`` means the same); otherwise a one-line
    error listing the shipped names."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    name = p.name if p.parent in (Path("."), Path("checkpoints")) else None
    if name and (shipped("checkpoints") / name).is_dir():
        return shipped("checkpoints") / name
    known = ", ".join(shipped_checkpoints()) or "none"
    raise GeodiffError(f"checkpoint not found: {name_or_path} (a folder, or a shipped model: {known})")


def data_dir() -> Path:
    """Where datasets live: ``$GEODIFF_DATA``, else ``data`` in the current folder."""
    return Path(os.environ.get(DATA_ENV) or "data")


def compose(config_name: str, overrides: list[str]):
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def build(group: str, name: str, overrides: list[str] | tuple[str, ...] = ()):
    """The object ``configs/<group>/<name>.yaml`` describes, with ``key=value`` overrides, e.g.
    ``build("scheduler", "eqgat_diff", ["pos.num_train_timesteps=100"])``: the configs are the one
    definition of the papers' settings, for Python users as for ``geodiff train``."""
    from omegaconf import OmegaConf

    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml"))) or "none"
        raise GeodiffError(f"{group}={name}: no such config (known: {known})")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    return instantiate(cfg)


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists, else relative to the project root (where shipped models live)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    shipped = project_root() / p
    return shipped if shipped.exists() else p


def recorded_data_path(recorded: str | os.PathLike) -> Path:
    """A data path an export recorded on the machine that trained it, found again on this one: as recorded
    when it exists here, else the same place under this machine's data folder (:func:`data_dir`): the
    part after the recorded path's last ``data`` folder (``/x/data/registration/tudl/models`` ->
    ``$GEODIFF_DATA/registration/tudl/models``), else its last part (``/x/eth_ucy`` ->
    ``$GEODIFF_DATA/eth_ucy``).
    Returns the recorded path when neither exists (the caller reports it)."""
    p = Path(recorded)
    if p.exists():
        return p
    parts = p.parts
    tails = [parts[len(parts) - parts[::-1].index("data") :]] if "data" in parts else []
    for tail in [t for t in (*tails, parts[-1:]) if t]:
        if (here := data_dir().joinpath(*tail)).exists():
            return here
    return p


def as_list(value) -> list[str] | None:
    """A list override as strings, where ``key=a`` means ``key=[a]``; None stays None."""
    from omegaconf import OmegaConf

    if value is None:
        return None
    return [str(x) for x in OmegaConf.to_container(value)] if OmegaConf.is_list(value) else [str(value)]


def install_summary() -> list[str]:
    """``geodiff info``: versions, the config groups and their options, the shipped models."""
    import diffusers
    import torch

    import geodiff

    lines = [f"geodiff {geodiff.__version__}  torch {torch.__version__}  diffusers {diffusers.__version__}",
             f"configs: {config_dir()}"]  # fmt: skip
    for group in sorted(p for p in config_dir().iterdir() if p.is_dir()):
        lines.append(f"  {group.name}: {', '.join(sorted(f.stem for f in group.glob('*.yaml')))}")
    lines.append(f"shipped models ({shipped('checkpoints')}): {', '.join(shipped_checkpoints())}")
    return lines


def as_dict(cfg) -> dict:
    """A composed config as a plain dict (interpolations resolved; lists as lists)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def instantiate(cfg, **kwargs):
    """Build the object a config describes (``_target_``), with plain Python containers as arguments
    (OmegaConf lists would not survive ``save_pretrained``'s JSON), and user errors as ``GeodiffError``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, GeodiffError):
            raise cause from None
        if isinstance(cause, TypeError):  # unknown / missing constructor argument
            raise GeodiffError(f"{cfg.get('_target_', 'object')}: {cause}") from None
        raise
