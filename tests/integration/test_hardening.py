# ruff: noqa: E501  (a table of command lines, one case a line)
"""Issue 35's reproduced breakages, each as a regression test: outputs that would overwrite an input or cannot
be written, malformed and hostile molecule files, impossible numbers. Every one ends in one line
``geodiff <cmd>: error: ...``, exit 2, nothing written and the inputs untouched; or succeeds within its guard.

Commands run in-process through ``geodiff.cli.main`` (fast), except where a crash of RDKit would take the test
process with it: those run as a subprocess."""

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.cli import main

ROOT = Path(__file__).resolve().parents[2]


def crafted_v3000(path: Path, atoms: int = 300, bonds: int = 2000) -> Path:
    """The issue's 53 KB V3000 record: 300 carbons, 2,000 random double bonds (RDKit's ring perception runs
    out of memory or crashes on it)."""
    rng = np.random.default_rng(0)
    lines = ["crafted", "  geodiff", "", "  0  0  0     0  0            999 V3000", "M  V30 BEGIN CTAB",
             f"M  V30 COUNTS {atoms} {bonds} 0 0 0", "M  V30 BEGIN ATOM"]  # fmt: skip
    lines += [
        f"M  V30 {i + 1} C {x:.4f} {y:.4f} {z:.4f} 0"
        for i, (x, y, z) in enumerate(rng.normal(size=(atoms, 3)))
    ]
    lines += ["M  V30 END ATOM", "M  V30 BEGIN BOND"]
    pairs: set = set()
    while len(pairs) < bonds:
        i, j = sorted(rng.integers(1, atoms + 1, size=2).tolist())
        if i != j:
            pairs.add((i, j))
    lines += [f"M  V30 {k + 1} 2 {i} {j}" for k, (i, j) in enumerate(sorted(pairs))]
    lines += ["M  V30 END BOND", "M  V30 END CTAB", "M  END", "$$$$"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("hard")
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    with Chem.SDWriter(str(d / "s.sdf")) as w:
        w.write(mol)
    (d / "zero.sdf").write_text(
        "empty\n  RDKit          3D\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n"
    )
    rng = np.random.default_rng(0)
    np.savetxt(d / "a.xyz", rng.normal(size=(200, 3)))
    np.savetxt(d / "b.xyz", rng.normal(size=(200, 3)))
    np.savetxt(d / "a20.xyz", rng.normal(size=(200, 3)) * 1e20)
    np.savetxt(d / "b20.xyz", rng.normal(size=(200, 3)) * 1e20)
    np.savez(
        d / "z200.npz",
        num_atoms=np.array([3]),
        charges=np.array([[6, 200, 1]]),
        positions=np.zeros((1, 3, 3)),
    )
    np.savez(d / "obj.npz", num_atoms=np.array([3], dtype=object), charges=np.array([[6, 1, 1]], dtype=object),
             positions=np.zeros((1, 3, 3), dtype=object))  # fmt: skip
    np.savez(d / "nan.npz", num_atoms=np.array([3]), charges=np.array([[6, 1, 1]]),
             positions=np.full((1, 3, 3), np.nan))  # fmt: skip
    np.savez(
        d / "wide.npz", num_atoms=np.array([7]), charges=np.array([[6, 1, 1]]), positions=np.zeros((1, 3, 3))
    )
    (d / "nan.xyz").write_text("3\nx\nC 0 0 nan\nH 1 0 0\nH 0 1 0\n")
    (d / "coinc.xyz").write_text("3\nx\nO 0 0 0\nH 0 0 0\nH 0 0 0\n")
    (d / "huge.xyz").write_text("100000000\nclaims a hundred million atoms\nC 0 0 0\n")
    (d / "a_file").write_text("not a folder")
    (d / "a_folder").mkdir()
    (d / "garbage.ckpt").write_bytes(b"\x80\x04 not a checkpoint")
    os.symlink("/dev/zero", d / "zero.xyz")
    os.symlink("/dev/zero", d / "zero.npy")
    np.savez_compressed(d / "bomb.npz", pred=np.zeros(50 * 2**20, dtype=np.uint8))  # 50 MB in about 50 KB
    traj = {"pred": np.zeros((2, 6, 4, 3)), "truth": np.zeros((6, 4, 3)), "observed": np.zeros((6, 3, 3)),
            "h": np.zeros((6, 1)), "num_cond": np.array(3)}  # fmt: skip
    np.savez(d / "traj_shifted.npz", batch=np.array([-2, -2, -2, -1, -1, -1]), **traj)
    np.savez(d / "traj_gap.npz", batch=np.array([0, 0, 0, 2, 2, 2]), **traj)
    crafted_v3000(d / "crafted.sdf")
    damaged_checkpoints(d)
    damaged_pairs(d)
    (d / "mixed.sdf").write_text((d / "crafted.sdf").read_text() + (d / "s.sdf").read_text())
    return d


def damaged_checkpoints(d: Path) -> None:
    """Copies of the shipped QM9 model, each damaged as in the issue: a layer more in the config, a tensor
    dropped, weights only as a pickle .bin, 100,000 layers, a negative atom-count histogram, 10^9 steps."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    src = ROOT / "checkpoints" / "qm9_eqgat_small"
    weights = "model/diffusion_pytorch_model.safetensors"

    def copy(name, edit_file=None, edit=None):
        shutil.copytree(src, d / name)
        if edit_file:
            f = d / name / edit_file
            obj = json.loads(f.read_text())
            edit(obj)
            f.write_text(json.dumps(obj))
        return d / name

    copy("ck_layers", "model/config.json", lambda c: c.update(num_layers=c["num_layers"] + 1))
    t = load_file(str(copy("ck_dropped") / weights))
    t.pop("atom_embed.bias")
    save_file(t, str(d / "ck_dropped" / weights))
    torch.save(
        load_file(str(copy("ck_bin") / weights)), d / "ck_bin" / "model" / "diffusion_pytorch_model.bin"
    )
    (d / "ck_bin" / weights).unlink()
    copy("ck_huge", "model/config.json", lambda c: c.update(num_layers=100_000))
    copy("ck_hist", "molecules.json", lambda c: c["statistics"]["num_atoms_hist"].update({"9": -5}))
    copy("ck_steps", "scheduler_pos/scheduler_config.json", lambda c: c.update(num_train_timesteps=10**9))


def damaged_pairs(d: Path) -> None:
    """A valid benchmark pairs file, then copies with object meta, meta that is not JSON, counts of 10^9
    and NaN coordinates."""
    from geodiff.data.pairs import PairConfig, make_benchmark_pairs, save_pairs

    pairs, meta = make_benchmark_pairs("procedural", None, PairConfig(num_points=64), 2, seed=0)
    save_pairs(d / "pairs.npz", pairs, **meta)
    good = dict(np.load(d / "pairs.npz"))
    bad = {
        "pairs_object_meta": {"meta": np.array([{"a": 1}], dtype=object)},
        "pairs_bad_json": {"meta": np.array("{not json")},
        "pairs_huge_counts": {"source_counts": np.array([10**9, 10**9])},
        "pairs_nan": {"target": np.full_like(good["target"], np.nan)},
    }
    for name, change in bad.items():
        np.savez(d / f"{name}.npz", **{**good, **change})


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
            and not p.is_symlink()}  # fmt: skip


MOL = "ckpt=qm9_eqgat_small"
CASES = [
    # outputs checked before any work: not an input, not a folder, a writable place, no companion clobbering
    (["register", "source={d}/a.xyz", "target={d}/b.xyz", "method=icp_point", "output={d}/a.xyz"], "is also the input source="),
    (["register", "source={d}/a.xyz", "target={d}/b.xyz", "method=icp_point", "plot={d}/b.xyz"], "is also the input target="),
    (["register", "source={d}/a.xyz", "target={d}/b.xyz", "method=icp_point", "output={d}/r.json", "plot={d}/r.json"], "is also output="),
    (["evaluate", "samples={d}/s.sdf", "output={d}/s.sdf"], "is also the input samples="),
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "output={d}/m.png"], "overwritten by its PNG grid"),
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "output={d}/m.sdf", "grid={d}/m.sdf"], "is also output="),
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "output={d}/a_file/m.sdf"], "is a file, not a folder"),
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "output={d}/a_folder"], "is a folder"),
    (["sample", "ckpt=nbody_charged_geotdm_small", "num_systems=2", "num_inference_steps=2", "output={d}/t.png"], "overwritten by its PNG plot"),
    (["evaluate", "task=trajectories", "samples={d}/nan.npz", "output={d}/a_folder"], "is a folder"),
    # malformed and hostile molecule files: reported, never a traceback or a crash
    (["evaluate", "samples={d}/zero.sdf"], "no atoms"),
    (["evaluate", "samples={d}/z200.npz"], "atomic number 200"),
    (["evaluate", "samples={d}/obj.npz"], "unreadable arrays"),
    (["evaluate", "samples={d}/nan.npz"], "NaN or infinite"),
    (["evaluate", "samples={d}/wide.npz"], "num_atoms must be whole numbers from 0 to 3"),
    (["evaluate", "samples={d}/nan.xyz"], "NaN or infinite"),
    (["evaluate", "samples={d}/huge.xyz"], "more than max_atoms=2000"),
    (["evaluate", "samples={d}/zero.xyz"], "not a regular file"),
    (["evaluate", "samples={d}/crafted.sdf"], "more than any element (8)"),
    (["evaluate", "samples={d}/s.sdf", "max_atoms=3"], "more than max_atoms=3"),
    (["evaluate", "samples={d}/s.sdf", "max_atoms=0"], "max_atoms"),
    # damaged checkpoints: one line before anything big is allocated, never random weights
    (["sample", "ckpt={d}/ck_layers", "num_samples=2", "output={d}/n.sdf"], "missing ['layers.6.edge_mlp.0.bias'"),
    (["sample", "ckpt={d}/ck_dropped", "num_samples=2", "output={d}/n.sdf"], "missing ['atom_embed.bias']"),
    (["sample", "ckpt={d}/ck_bin", "num_samples=2", "output={d}/n.sdf"], "safetensors weights only"),
    (["sample", "ckpt={d}/ck_huge", "num_samples=2", "output={d}/n.sdf"], "num_layers=100000 cannot match the weights"),
    (["sample", "ckpt={d}/ck_hist", "num_samples=2", "output={d}/n.sdf"], "num_atoms_hist"),
    (["sample", "ckpt={d}/ck_steps", "num_samples=2", "output={d}/n.sdf"], "num_train_timesteps: must be an integer from 1 to 1,000,000"),
    # damaged registration benchmark files
    (["evaluate", "task=registration", "pairs={d}/pairs_object_meta.npz", "methods=[icp_point]"], "not a readable npz file"),
    (["evaluate", "task=registration", "pairs={d}/pairs_bad_json.npz", "methods=[icp_point]"], "meta is not a JSON object"),
    (["evaluate", "task=registration", "pairs={d}/pairs_huge_counts.npz", "methods=[icp_point]"], "source_counts must be"),
    (["evaluate", "task=registration", "pairs={d}/pairs_nan.npz", "methods=[icp_point]"], "target must be finite"),
    # inputs that are not files, or inflate, or number their systems wrongly
    (["register", "source={d}/zero.npy", "target={d}/b.xyz", "method=icp_point", "output={d}/r.json"], "not a regular file"),
    (["evaluate", "task=trajectories", "samples={d}/bomb.npz"], "GEODIFF_MAX_NPZ_MB"),
    (["evaluate", "task=trajectories", "samples={d}/traj_shifted.npz"], "numbered 0, 1, ... without gaps"),
    (["evaluate", "task=trajectories", "samples={d}/traj_gap.npz"], "numbered 0, 1, ... without gaps"),
    # impossible numbers
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "num_atoms=2.7", "output={d}/n.sdf"], "num_atoms"),
    (["sample", MOL, "num_samples=2", "num_inference_steps=2", "num_atoms=-5", "output={d}/n.sdf"], "num_atoms"),
    (["register", "source={d}/a20.xyz", "target={d}/b20.xyz", "method=diffusion", "output={d}/r.json"], "rescale the clouds"),
    (["train", "experiment=qm9_eqgat_small", "ckpt_path={d}/missing.ckpt", "output_dir={d}/run"], "ckpt_path"),
    (["train", "experiment=qm9_eqgat_small", "ckpt_path={d}/garbage.ckpt", "output_dir={d}/run"], "not a Lightning checkpoint"),
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{a[0]}-{m[:24]}" for a, m in CASES])
def test_one_line_exit_2_nothing_written_inputs_untouched(d, capsys, index, monkeypatch):
    monkeypatch.setenv("GEODIFF_MAX_NPZ_MB", "16")  # the bomb inflates to 50 MB
    template, message = CASES[index]
    args = [a.replace("{d}", str(d)) for a in template]
    before = digest(d)
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1] if err else ""
    assert rc == 2 and message in last and last.startswith(f"geodiff {args[0]}: error:"), (args, rc, err[-3:])
    assert not [line for line in err if line.startswith("Traceback")], err
    assert digest(d) == before  # inputs untouched, nothing new written beside them
    assert not (d / "run").exists() and not list((d / "a_folder").iterdir()) and not list(d.glob(".*"))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only bind mount: unwritable even for root (these sessions run as root, for whom
    permission bits do not bind). Skipped where mounting is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    r = subprocess.run(["mount", "-o", "bind,ro", str(folder), str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here ({r.stderr.strip() or r.returncode})")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command", ["evaluate", "register", "sample"])
def test_outputs_into_a_read_only_place_are_refused_before_any_work(d, capsys, read_only_folder, command):
    args = {"evaluate": ["evaluate", f"samples={d / 's.sdf'}", f"output={read_only_folder / 'r.json'}"],
            "register": ["register", f"source={d / 'a.xyz'}", f"target={d / 'b.xyz'}", "method=icp_point",
                         f"output={read_only_folder / 'r.json'}"],
            "sample": ["sample", MOL, "num_samples=2", "num_inference_steps=2",
                       f"output={read_only_folder / 'm.sdf'}"]}[command]  # fmt: skip
    before = digest(d)
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"geodiff {command}: error: output: cannot write to"), err[-3:]
    assert digest(d) == before and not list(read_only_folder.iterdir())


def test_a_place_that_passes_the_permission_check_but_refuses_writes(d, capsys):
    """sysfs: ``os.access`` says writable (root), creating a file fails: refused up front by a real try."""
    if not Path("/sys").is_dir() or not os.access("/sys", os.W_OK):
        pytest.skip("no writable-looking /sys here")
    try:
        Path("/sys/.geodiff-test").touch()
    except OSError:
        pass
    else:
        Path("/sys/.geodiff-test").unlink()
        pytest.skip("/sys accepts files here")
    rc = main(["evaluate", f"samples={d / 's.sdf'}", "output=/sys/geodiff-report.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("geodiff evaluate: error: output: cannot write to /sys"), err[-3:]


def test_a_hostile_record_costs_itself_not_the_run(d, capsys):
    """A file with the crafted record and a good molecule: the good one is evaluated, the crafted one listed."""
    assert main(["evaluate", f"samples={d / 'mixed.sdf'}", f"output={d / 'mixed.json'}"]) == 0
    report = __import__("json").loads((d / "mixed.json").read_text())
    assert report["num_molecules"] == 1 and len(report["unreadable"]) == 1
    assert "more than any element" in report["unreadable"][0]["reason"]
    (d / "mixed.json").unlink()


def test_coincident_atoms_are_flagged_as_invalid_geometry(d, capsys):
    assert main(["evaluate", f"samples={d / 'coinc.xyz'}"]) == 0
    assert "invalid geometry          1 molecules with atoms closer than 0.5 A" in capsys.readouterr().out


def test_generated_nonsense_is_written_not_crashed_on(tmp_path):
    """300 atoms after one DDIM step: a graph RDKit chokes on. geodiff writes it with its own molfile writer
    (every record; V3000 beyond 999 atoms or bonds) and scores it without handing RDKit what could crash it."""
    r = subprocess.run([sys.executable, "-m", "geodiff.cli", "sample", MOL, "num_atoms=300", "num_samples=1",
                        "sampler=ddim", "num_inference_steps=1", f"output={tmp_path / 'big.sdf'}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "big.sdf").read_text()
    assert text.count("$$$$") == 1 and "M  V30 COUNTS 300 " in text  # > 999 bonds: a V3000 record
    assert (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG"


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _default_sigint() -> None:
    # a test run started in the background of a non-interactive shell (nohup make test &) inherits SIGINT
    # ignored, and so would the command: give it the default disposition, as an interactive terminal does
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


DOCKING = ROOT.parent / "shared" / "data" / "docking" / "1iep"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum, code, word", [(15, 143, "terminated"), (2, 130, "interrupted")])
def test_a_signal_during_docking_exits_with_one_line_and_leaves_no_worker(tmp_path, signum, code, word):
    import signal
    import time

    pytest.importorskip("vina")
    if not (DOCKING / "1iep_receptor.pdbqt").is_file():
        pytest.skip("../shared/data/docking/1iep not present")
    ligands = tmp_path / "three.sdf"
    ligands.write_text((DOCKING / "1iep_ligand.sdf").read_text() * 3)
    proc = subprocess.Popen([sys.executable, "-m", "geodiff.cli", "evaluate", "task=docking", f"samples={ligands}",
                             f"receptor={DOCKING / '1iep_receptor.pdbqt'}", f"ligand={DOCKING / '1iep_ligand.sdf'}",
                             "exhaustiveness=64", "processes=2", f"output={tmp_path / 'd.json'}"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
                            preexec_fn=_default_sigint)  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:  # the pool's two spawned workers
            time.sleep(0.5)
            workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
        assert len(workers) >= 2, "no docking workers started"
        time.sleep(3)  # the workers are docking now
        proc.send_signal(signal.Signals(signum))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err[-2000:]
        lines = [ln.split("\r")[-1] for ln in err.strip().split("\n") if ln.strip()]  # after progress bars
        assert lines[-1] == f"geodiff evaluate: {word}" and "Traceback" not in err, err[-2000:]
        deadline = time.time() + 30  # killed at once; a loaded machine may take a moment to reap them
        while time.time() < deadline and [p for p in workers if _alive(p)]:
            time.sleep(0.5)
        assert not [p for p in workers if _alive(p)], "worker processes outlived the command"
        assert not (tmp_path / "d.json").exists() and not list(tmp_path.glob(".*"))
    finally:  # a failed assertion must not leave a docking run (exhaustiveness 64) on the cores
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
