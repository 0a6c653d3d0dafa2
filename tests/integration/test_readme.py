"""The README's quickstarts and library tour run as written: every ```python and ```bash block of those
sections is executed from an empty folder (``geodiff`` and ``python`` resolve to this environment), and what
they promise to write is there."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("Quickstart: molecules", "Quickstart: trajectories", "Quickstart: registration", "Library tour")


def _blocks():
    text = (ROOT / "README.md").read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    out = []
    for part in parts:
        title = part.splitlines()[0].strip() if part.strip() else ""
        if title in SECTIONS:
            for k, (lang, code) in enumerate(re.findall(r"```(python|bash)\n(.*?)```", part, flags=re.S)):
                out.append(pytest.param(lang, code, id=f"{title.split(': ')[-1]}-{lang}-{k}"))
    return out


BLOCKS = _blocks()


def test_the_readme_sections_have_snippets():
    assert len(BLOCKS) >= 7 and len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize(("lang", "code"), BLOCKS)
def test_readme_snippet_runs(lang, code, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GEODIFF_CONFIG_DIR"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (code, r.stdout[-1500:], r.stderr[-3000:])
    for name in re.findall(r"(?:output=|write_sdf\(\"|plot=|plot\(\")([\w.]+\.(?:sdf|json|npz|png))", code):
        assert (tmp_path / name).is_file(), name
