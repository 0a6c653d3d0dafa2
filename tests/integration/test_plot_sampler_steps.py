"""eval/plot_sampler_steps.py on the result files the README quotes: table, figure and bad input."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "eval" / "results"
SHIPPED = [RESULTS / "qm9_eqgat_small_ddim100_n1000.json", RESULTS / "qm9_eqgat_small_ddpm500_n1000.json"]


def plot(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "eval" / "plot_sampler_steps.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)  # fmt: skip


def test_table_and_figure_from_the_shipped_model_results(tmp_path):
    png = tmp_path / "steps.png"
    r = plot(*reversed(SHIPPED), "--out", png)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:3]]
    assert [row[:3] for row in rows] == [["ddim", "100", "1000"], ["ddpm", "500", "1000"]]  # sorted
    for row, path in zip(rows, SHIPPED, strict=True):
        d = json.loads(path.read_text())
        assert float(row[3]) == round(100 * d["mol_stability"], 1)
        assert float(row[6]) == round(100 * d["validity"], 1)
        p, n = d["mol_stability"], d["num_molecules"]
        assert float(row[5]) == round(100 * (p * (1 - p) / n) ** 0.5, 1)  # binomial standard error
        assert float(row[-1]) == round(d["seconds"] / n, 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_a_one_line_error(tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"sampler": "ddpm", "steps": 10}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cases = [([SHIPPED[0], partial], "missing num_molecules"), ([broken], "not a readable JSON file"),
             ([tmp_path / "absent.json"], "not a readable JSON file"),
             ([SHIPPED[0], SHIPPED[0]], "the same sampler and number of steps")]  # fmt: skip
    for files, message in cases:
        r = plot(*files, "--out", tmp_path / "x.png")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("plot_sampler_steps.py: error:"), lines
        assert message in lines[0]
    assert not (tmp_path / "x.png").exists()
