"""Training curves from Lightning CSV logs: parsing sparse rows, merging resumed versions, summary, plot."""

import json

import numpy as np
import pytest

from geodiff.cli import main
from geodiff.errors import GeodiffError
from geodiff.training.curves import (
    check_metrics,
    default_metrics,
    lower_is_better,
    plot_runs,
    read_metrics_csv,
    read_run,
    summarise,
)

# Lightning's CSVLogger layout: one row per logging call, empty cells for metrics not logged in that row
V0 = """epoch,loss,step,train/loss,val/ade,val/validity,val_loss
0,2.0,19,2.0,,,
0,1.5,39,1.5,,,
0,,39,,0.9,0.25,1.8
1,1.25,59,1.25,,,
1,,79,,0.7,0.5,1.4
"""
# resumed from the checkpoint of step 59: overlaps step 79 (the resumed value wins) and goes on
V1 = """epoch,loss,step,train/loss,val/ade,val/validity,val_loss
1,,79,,0.6,0.375,1.3
2,1.0,99,1.0,,,
2,,119,,0.8,0.625,1.2
"""


def _run(tmp_path, *versions):
    for i, text in enumerate(versions):
        d = tmp_path / "lightning_logs" / f"version_{i}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(text)
    return tmp_path


def test_sparse_rows_parse_into_series(tmp_path):
    p = _run(tmp_path, V0) / "lightning_logs" / "version_0" / "metrics.csv"
    m = read_metrics_csv(p)
    assert set(m) == {"loss", "train/loss", "val/ade", "val/validity", "val_loss"}
    steps, values = m["val/ade"]
    np.testing.assert_array_equal(steps, [39, 79])
    np.testing.assert_array_equal(values, [0.9, 0.7])
    np.testing.assert_array_equal(m["train/loss"][0], [19, 39, 59])


def test_resumed_versions_merge_and_aliases_fold(tmp_path):
    m = read_run(_run(tmp_path, V0, V1))
    assert "loss" not in m and "val_loss" not in m  # shown once, under their namespaced names
    steps, values = m["val/ade"]
    np.testing.assert_array_equal(steps, [39, 79, 119])
    np.testing.assert_array_equal(values, [0.9, 0.6, 0.8])  # step 79 from the resumed version
    np.testing.assert_array_equal(m["val/loss"][1], [1.8, 1.3, 1.2])
    np.testing.assert_array_equal(m["train/loss"][0], [19, 39, 59, 99])
    assert default_metrics({"run": m}) == ["train/loss", "val/ade", "val/loss", "val/validity"]


def test_summary_best_respects_direction(tmp_path):
    s = summarise(read_run(_run(tmp_path, V0, V1)))
    assert s["val/ade"] == {"points": 3, "first": 0.9, "last": 0.8, "last_step": 119, "best": 0.6,
                            "best_step": 79}  # fmt: skip
    assert s["val/validity"]["best"] == 0.625 and s["val/validity"]["best_step"] == 119
    assert lower_is_better("val/rot_err_deg") and lower_is_better("train/loss")
    assert not lower_is_better("val/mol_stable") and not lower_is_better("val/validity")


def test_plot_and_cli(tmp_path, capsys):
    run = _run(tmp_path / "a", V0, V1)
    png = plot_runs({"a": read_run(run)}, tmp_path / "c.png", smooth=2, title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, js = tmp_path / "cli.png", tmp_path / "s.json"
    assert main(["curves", f"runs=[{run},{run / 'lightning_logs/version_0/metrics.csv'}]", "labels=[all,v0]",
                 "metrics=val/ade", f"output={out}", f"summary={js}"]) == 0  # fmt: skip
    summary = json.loads(js.read_text())
    assert summary["all"]["val/ade"]["last"] == 0.8 and summary["v0"]["val/ade"]["last"] == 0.7
    assert out.read_bytes()[:4] == b"\x89PNG" and "best 0.6 (step 79)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, message",
    [("epoch,loss\n0,1.0\n", "no 'step' column"), ("", "no 'step' column"),
     ("epoch,step,loss\n0,x,1.0\n", "step 'x' is not a number"),
     ("epoch,step,loss\n0,3,abc\n", "loss = 'abc' is not a number")],
)  # fmt: skip
def test_bad_logs_one_line_errors(tmp_path, text, message):
    with pytest.raises(GeodiffError, match=message):
        read_run(_run(tmp_path, text))


def test_cli_errors(tmp_path, capsys):
    run = _run(tmp_path / "a", V0)
    cases = [
        ([f"runs={tmp_path / 'missing'}"], "no such run folder"),
        ([f"runs={tmp_path}"], "no lightning_logs/version_*/metrics.csv"),
        ([f"runs={run}", "metrics=[val/zzz]"], "val/zzz not in the logs"),
        ([f"runs=[{run},{run}]"], "labels: not unique"),
        ([f"runs={run}", "labels=[a,b]"], "2 labels for 1 runs"),
        ([f"runs={run}", "smooth=0"], "smooth: must be an integer >= 1"),
    ]
    for args, message in cases:
        assert main(["curves", *args, f"output={tmp_path / 'x.png'}"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(GeodiffError, match="not in the logs"):
        check_metrics({"a": read_run(run)}, ["val/nope"])
