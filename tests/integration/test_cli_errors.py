"""Every CLI command against a missing file, a malformed file, a checkpoint of another family and a
nonsensical override: exit status 2, one line naming the problem, no traceback, no output file written.

The commands run in-process through ``geodiff.cli.main`` (the subprocess tests in the other CLI test files
check the real entry point); an exception escaping ``main`` fails the test, which is what a traceback is."""

import numpy as np
import pytest

from geodiff.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
MOL = ROOT / "checkpoints" / "qm9_eqgat_small"
TRAJ = ROOT / "checkpoints" / "nbody_charged_geotdm_small"
REG = ROOT / "checkpoints" / "registration_tudl_small"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    head = "benzene\n  RDKit          3D\n\n  6  6  0  0  0  0  0  0  0  0999 V2000\n"
    (d / "truncated.sdf").write_text(head + "    1.2000    0.0000    0.0000 C   0  0\n")
    (d / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty flaot x\nend_header\n")
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(d / "wrong_keys.npz", foo=np.zeros(3))
    water = "water\n  RDKit          3D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n" + "".join(
        f"{x:10.4f}{y:10.4f}{z:10.4f} {e:<3} 0  0  0  0  0  0  0  0  0  0  0  0\n"
        for x, y, z, e in ((0, 0, 0.117, "O"), (0, 0.757, -0.469, "H"), (0, -0.757, -0.469, "H"))
    )
    (d / "water.sdf").write_text(water + "  1  2  1  0\n  1  3  1  0\nM  END\n$$$$\n")
    np.savetxt(d / "cloud.xyz", np.random.default_rng(0).normal(size=(40, 3)))
    return d


def cases(d):
    out = d / "out.json"
    return [
        # sample
        (
            ["sample", f"ckpt={d / 'nope'}", f"output={d / 'x.sdf'}"],
            "(a folder, or a shipped model: eth_ucy_eth_geotdm_small",
        ),
        (["sample", f"ckpt={REG}", f"output={d / 'x.sdf'}"], "family: registration"),
        (["sample", f"ckpt={MOL}", "num_samples=0", f"output={d / 'x.sdf'}"], "num_samples"),
        (["sample", f"ckpt={MOL}", "num_samples=abc", f"output={d / 'x.sdf'}"], "num_samples"),
        (["sample", f"ckpt={MOL}", "sampler=euler", "num_samples=2", f"output={d / 'x.sdf'}"], "sampler"),
        (["sample", f"ckpt={MOL}", "last_step=mode", "num_samples=2", f"output={d / 'x.sdf'}"], "last_step"),
        (["sample", f"ckpt={TRAJ}", "num_systems=-1", f"output={d / 'x.npz'}"], "num_systems"),
        (["sample", f"ckpt={MOL}", "num_inference_steps=-3", f"output={d / 'x.sdf'}"], "inference_steps"),
        (["sample", f"ckpt={MOL}", "batch_size=0", f"output={d / 'x.sdf'}"], "batch_size"),
        (["sample", "num_samples=[1"], "error"),
        # evaluate (molecules, trajectories, docking, registration)
        (["evaluate", f"samples={d / 'missing.sdf'}", f"output={out}"], "not found"),
        (["evaluate", f"samples={d / 'truncated.sdf'}", f"output={out}"], "no readable molecules"),
        (["evaluate", f"samples={d / 'wrong_keys.npz'}", f"output={out}"], "QM9 keys"),
        (["evaluate", f"samples={d / 'garbage.npz'}", f"output={out}"], "garbage.npz"),
        (["evaluate", "task=bogus", f"samples={d / 'wrong_keys.npz'}"], "is not one of molecules"),
        (["evaluate", f"samples={d / 'water.sdf'}", "valence_table=mmff"], "'mmff' is not one of strict"),
        (["evaluate", "task=trajectories", f"samples={d / 'wrong_keys.npz'}", f"output={out}"], "'pred'"),
        (["evaluate", "task=trajectories", f"samples={d / 'missing.npz'}"], "not found"),
        (
            [
                "evaluate",
                "task=docking",
                f"samples={d / 'truncated.sdf'}",
                "center=[0,0,0]",
                f"receptor={d / 'missing.pdb'}",
            ],
            "no readable molecules",
        ),  # fmt: skip
        (["evaluate", "task=docking", f"samples={d / 'truncated.sdf'}"], "receptor=PATH"),
        (
            [
                "evaluate",
                "task=docking",
                f"samples={d / 'water.sdf'}",
                "center=[0,0,0]",
                f"receptor={d / 'r.pdbqt'}",
                "posebusters=true",
                f"output={out}",
            ],
            "posebusters=true needs",
        ),  # fmt: skip
        (["evaluate", "task=registration", f"pairs={d / 'missing.npz'}", f"output={out}"], "no such file"),
        (["evaluate", "task=registration", f"pairs={d / 'bad.ply'}", f"output={out}"], "not an npz"),
        (["evaluate", "task=registration", f"pairs={d / 'wrong_keys.npz'}", f"output={out}"], "pairs file"),
        # register
        (["register", f"source={d / 'bad.ply'}", f"target={d / 'cloud.xyz'}", f"output={out}"], "bad PLY"),
        (["register", f"source={d / 'wrong_keys.npz'}", f"target={d / 'cloud.xyz'}"], "point-cloud format"),
        (
            [
                "register",
                f"source={d / 'cloud.xyz'}",
                f"target={d / 'cloud.xyz'}",
                f"ckpt={MOL}",
                f"output={out}",
            ],
            "not a registration checkpoint",
        ),  # fmt: skip
        (
            ["register", f"source={d / 'cloud.xyz'}", f"target={d / 'cloud.xyz'}", "refine_steps=-1"],
            "refine_steps",
        ),
        # train
        (["train", "experiment=nope"], "experiment/nope"),
        (
            [
                "train",
                "experiment=qm9_eqgat_small",
                f"data.path={d / 'missing.npz'}",
                f"output_dir={d / 't'}",
            ],
            "not found",
        ),  # fmt: skip
        (
            [
                "train",
                "experiment=qm9_eqgat_small",
                f"data.path={d / 'wrong_keys.npz'}",
                f"output_dir={d / 't'}",
            ],
            "QM9 keys",
        ),  # fmt: skip
        (
            ["train", "experiment=qm9_eqgat_small", "model.num_layers=-1", f"output_dir={d / 't'}"],
            "model.num_layers",
        ),  # fmt: skip
        (
            [
                "train",
                "experiment=qm9_eqgat_small",
                "trainer.max_epochs=abc",
                "data.limit=8",
                f"output_dir={d / 't'}",
            ],
            "max_epochs",
        ),  # fmt: skip
        (
            [
                "train",
                "experiment=qm9_eqgat_small",
                "trainer.accelerator=tpu",
                "data.limit=8",
                f"output_dir={d / 't'}",
            ],
            "could not start",
        ),  # fmt: skip
        (
            [
                "train",
                "experiment=qm9_eqgat_small",
                f"module.init_from={REG}",
                "data.limit=8",
                f"output_dir={d / 't'}",
            ],
            "init_from",
        ),  # fmt: skip
        (
            [
                "train",
                "experiment=registration_tudl_small",
                f"data.models_dir={d / 'nope'}",
                f"output_dir={d / 't'}",
            ],
            "no such folder",
        ),  # fmt: skip
        # data
        (["data", "bogus"], "usage"),
        (["data", "nbody", "kind=magnetic", f"output={d / 'nb'}"], "unknown N-body"),
        (["data", "nbody", "num_train=-1", f"output={d / 'nb'}"], "num_train"),
        (["data", "registration", f"models_dir={d / 'nope'}", f"output={d / 'p.npz'}"], "no such folder"),
        (["data", "registration", f"modelnet={d / 'nope'}", f"output={d / 'p.npz'}"], "no such file"),
        (["data", "registration", "procedural=true", "keep=2", f"output={d / 'p.npz'}"], "keep"),
        # schedule / info
        (["schedule", "scheduler=nope"], "scheduler/nope"),
        (["info", "foo=bar"], "no overrides"),
    ]


CASES = cases(__import__("pathlib").Path("{d}"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(a[:2]) for a, _ in CASES])
def test_command_fails_with_one_line_and_status_2(files, capsys, index):
    template, message = CASES[index]
    args = [a.replace("{d}", str(files)) for a in template]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1] if err else ""
    assert rc == 2 and message in last and last.startswith(f"geodiff {args[0]}: error:"), (args, rc, err[-3:])
    # (in-process only: Lightning's logging handler may still hold an earlier test's closed capture stream and
    # report "--- Logging error ---" with a traceback of the logging module; that is the harness, not the CLI)
    harness = {i + 1 for i, line in enumerate(err) if line == "--- Logging error ---"}
    assert not [i for i, line in enumerate(err) if line.startswith("Traceback") and i not in harness], err
    # nothing half-written
    assert not (files / "out.json").exists() and not (files / "x.sdf").exists()
    assert not (files / "p.npz").exists() and not list(files.glob(".*"))
