"""Atomic outputs: complete file or nothing, usual permissions, no temp files left."""

import os
import stat

import pytest

from geodiff.io import atomic_path, atomic_save_pretrained
from geodiff.schedulers import E3DDPMScheduler


def test_atomic_path_writes_with_usual_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_save_pretrained(tmp_path):
    out = atomic_save_pretrained(E3DDPMScheduler(num_train_timesteps=7), tmp_path / "s")
    assert [p.name for p in out.iterdir()] == ["scheduler_config.json"]
    assert E3DDPMScheduler.from_pretrained(out).config.num_train_timesteps == 7


def test_device_description_names_the_cpu_threads():
    import torch

    from geodiff.io import device_description

    assert device_description("cpu") == f"CPU, {torch.get_num_threads()} threads"


def test_save_figure_writes_png_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "plots" / "a.png", dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.number not in plt.get_fignums()
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]


def test_save_figure_failure_keeps_old_file_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodiff.io import save_figure

    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    fig = plt.figure()

    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    fig.savefig = broken_savefig
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, target, tight=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert fig.number not in plt.get_fignums()
