"""Atomic output: every file geodiff writes appears complete or not at all (temp file, then rename)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_save_pretrained", "save_figure", "public_config", "checkpoint_meta",
           "check_npz_size", "check_outputs", "output_and_picture", "device_description", "write_json",
           "progress", "FAMILIES", "PROGRESS_MIN_ITEMS"]  # fmt: skip

PROGRESS_MIN_ITEMS = 1000  # loops over fewer items show no bar

FAMILIES = {"molecules": "molecule", "trajectories": "trajectory", "registration": "registration"}


def public_config(obj) -> dict:
    """The user-facing config of a diffusers ConfigMixin object (without its private ``_*`` bookkeeping)."""
    return {k: v for k, v in obj.config.items() if not k.startswith("_")}


def progress(iterable=None, total: int | None = None, desc: str = "", unit: str = "it",
             show: bool | None = None, file=None, **tqdm_kwargs):  # fmt: skip
    """A tqdm bar for the library's long loops (reading, bond perception, RDKit checks, big ICP). It appears
    on a terminal only (tqdm's ``disable=None``: never in logs or captured output) and, unless ``show`` says
    otherwise, only for loops of at least ``PROGRESS_MIN_ITEMS`` items."""
    from tqdm import tqdm

    n = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    if show is None:
        show = n is None or n >= PROGRESS_MIN_ITEMS
    off = None if show else True  # None: tqdm shows it on a terminal only
    return tqdm(iterable, total=n, desc=desc, unit=unit, disable=off, leave=False, file=file, **tqdm_kwargs)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


MAX_NPZ_MB = 4096  # decompressed size of an npz geodiff reads (GEODIFF_MAX_NPZ_MB overrides)


def check_npz_size(path: str | os.PathLike) -> None:
    """Refuse an npz whose arrays decompress to more than ``GEODIFF_MAX_NPZ_MB`` (default 4096 MB), from
    the zip directory, before any array is read (a small crafted file can inflate to gigabytes)."""
    import zipfile

    from geodiff.errors import GeodiffError

    budget = float(os.environ.get("GEODIFF_MAX_NPZ_MB", MAX_NPZ_MB))
    try:
        with zipfile.ZipFile(path) as zf:
            size = sum(i.file_size for i in zf.infolist()) / 2**20
    except Exception as exc:  # not a zip, or a damaged directory
        raise GeodiffError(f"{path}: not a readable npz file ({type(exc).__name__})") from None
    if size > budget:
        raise GeodiffError(f"{path}: {size:.0f} MB once decompressed, more than the {budget:.0f} MB allowed "
                           "(set GEODIFF_MAX_NPZ_MB to allow more)")  # fmt: skip


def check_outputs(outputs: dict, inputs: dict | None = None) -> None:
    """Check before any computation that every output path (``{name: path or None}``) can be written: not
    a folder, its parent a folder (or creatable) that is writable, none equal to an input (``{name: path}``)
    or to another output. Raises ``GeodiffError`` naming the override to change."""
    from geodiff.errors import GeodiffError

    def same(a: Path, b: Path) -> bool:
        try:
            return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
        except OSError:
            return False

    seen: dict[str, Path] = {}
    named_inputs = {k: Path(v) for k, v in (inputs or {}).items() if v not in (None, "")}
    for name, value in outputs.items():
        if value in (None, ""):
            continue
        path = Path(value)
        if path.is_dir():
            raise GeodiffError(f"{name}: {path} is a folder; give a file path")
        for other, q in named_inputs.items():
            if same(path, q):
                raise GeodiffError(f"{name}: {path} is also the input {other}=; write the result elsewhere")
        for other, q in seen.items():
            if same(path, q):
                raise GeodiffError(f"{name}: {path} is also {other}=; give them different paths")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise GeodiffError(f"{name}: cannot create {path} ({parent} is a file, not a folder)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise GeodiffError(f"{name}: cannot write to {parent} (no permission)")
        try:  # os.access trusts permission bits: root, read-only mounts and sysfs need a real try
            fd, probe = tempfile.mkstemp(prefix=".geodiff-probe-", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise GeodiffError(f"{name}: cannot write to {parent} ({exc.strerror or exc})") from None
        seen[name] = path


def output_and_picture(output, picture, name: str, suffix: str) -> Path | None:
    """The PNG written beside ``output`` (``picture``, else ``output`` with a .png suffix), after checking
    both paths before any work (:func:`check_outputs`); None when there is no output. ``name`` is the
    picture's override (``grid``, ``plot``), ``suffix`` what the output should be called."""
    from geodiff.errors import GeodiffValueError

    if output is None:
        return None
    png = Path(picture) if picture else Path(output).with_suffix(".png")
    if png == Path(output):
        raise GeodiffValueError(f"output: {output} would be overwritten by its PNG {name}; name it {suffix}")
    check_outputs({"output": output, name: png})
    return png


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    """``obj`` as JSON at ``path``, atomically (with a final newline); returns the path."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, path: str | os.PathLike, dpi: int = 110, tight: bool = True) -> Path:
    """Lay out a matplotlib figure (``tight_layout`` unless ``tight`` is False, for a figure placed by hand),
    write it as a PNG atomically and close it, also when writing fails."""
    import matplotlib.pyplot as plt

    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def atomic_save_pretrained(obj, directory: str | os.PathLike) -> Path:
    """``obj.save_pretrained`` into a temporary folder, then move each file into ``directory``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=target))
    try:
        obj.save_pretrained(tmp)
        for f in tmp.iterdir():
            os.replace(f, target / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def checkpoint_meta(directory: str | os.PathLike, family: str) -> dict:
    """The ``<family>.json`` of an exported checkpoint folder, or a one-line error naming the family the
    folder holds instead (or that it is not readable)."""
    import json

    from geodiff.errors import GeodiffError

    d = Path(directory)
    path = d / f"{family}.json"
    if not path.is_file():
        found = [f for f in FAMILIES if f != family and (d / f"{f}.json").is_file()] + ["unknown"]
        raise GeodiffError(f"{d}: not a {FAMILIES[family]} checkpoint (no {family}.json; family: {found[0]})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeodiffError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if meta.get("family", family) != family:
        raise GeodiffError(f"{d}: checkpoint of family {meta.get('family')!r}, expected {family!r}")
    return meta


def device_description(device) -> str:
    """What computes on ``device``, for run records and benchmark output: the GPU's name, or the CPU and
    its torch thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type.upper()}, {torch.get_num_threads()} threads"
