"""Property-based tests (hypothesis): the file readers fed random bytes or damaged valid files, and the metric
functions fed random molecules, clouds and poses, either succeed or raise a geodiff error: never an
IndexError, a numpy warning turned error, or a crash. Metric values stay in their ranges."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodiff.data.pairs import load_pairs
from geodiff.data.pointclouds import check_cloud, read_npy, read_off, read_ply, read_xyz, write_ply
from geodiff.data.structures import Molecule3D, read_npz, read_sdf
from geodiff.data.structures import read_xyz as read_molecule_xyz
from geodiff.data.trajectories import read_eth_ucy_file
from geodiff.data.trajectories import read_npz as read_trajectory_npz
from geodiff.errors import GeodiffError
from geodiff.metrics.bonds import perceive
from geodiff.metrics.chemistry import molecule_metrics
from geodiff.metrics.pose import pose_metrics, summarize_pose_metrics

# GEODIFF_FUZZ_EXAMPLES=1000 for a long run; make test keeps 60
FUZZ = settings(max_examples=int(os.environ.get("GEODIFF_FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

PLY_ASCII = (b"ply\nformat ascii 1.0\nelement vertex 4\n"
             b"property float x\nproperty float y\nproperty float z\nelement face 2\n"
             b"property list uchar int vertex_indices\nend_header\n"
             b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")  # fmt: skip
OFF = b"OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n"
SDF = (b"water\n  RDKit          3D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
       b"    0.0000    0.0000    0.1173 O   0  0  0  0  0  0  0  0  0  0  0  0\n"
       b"    0.0000    0.7572   -0.4692 H   0  0  0  0  0  0  0  0  0  0  0  0\n"
       b"    0.0000   -0.7572   -0.4692 H   0  0  0  0  0  0  0  0  0  0  0  0\n"
       b"  1  2  1  0\n  1  3  1  0\nM  END\n$$$$\n")  # fmt: skip
XYZ_MOL = b"3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
SDF_V3000 = (b"water\n  geodiff          3D\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\n"
             b"M  V30 COUNTS 3 2 0 0 0\nM  V30 BEGIN ATOM\nM  V30 1 O 0.0 0.0 0.1173 0\n"
             b"M  V30 2 H 0.0 0.7572 -0.4692 0\nM  V30 3 H 0.0 -0.7572 -0.4692 0\nM  V30 END ATOM\n"
             b"M  V30 BEGIN BOND\nM  V30 1 1 1 2\nM  V30 2 1 1 3\nM  V30 END BOND\nM  V30 END CTAB\n"
             b"M  END\n$$$$\n")  # fmt: skip


def _binary_ply() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = write_ply(Path(d) / "m.ply", np.eye(3), np.eye(3), [[0, 1, 2]])
        return p.read_bytes()


def _qm9_npz() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, num_atoms=np.array([3, 2]), charges=np.array([[8, 1, 1], [1, 1, 0]]),
             positions=np.random.default_rng(0).normal(size=(2, 3, 3)))  # fmt: skip
    return buf.getvalue()


VALID = {".ply": [PLY_ASCII, _binary_ply()], ".off": [OFF], ".sdf": [SDF, SDF_V3000], ".xyz": [XYZ_MOL],
         ".npz": [_qm9_npz()]}  # fmt: skip
READERS = {
    ".ply": [read_ply],
    ".off": [read_off],
    ".xyz": [read_xyz, read_molecule_xyz, read_eth_ucy_file],
    ".sdf": [read_sdf],
    ".npy": [read_npy],
    ".npz": [load_pairs, read_npz, read_trajectory_npz],
}


def damaged(data: st.DataObject, ext: str) -> bytes:
    """Random bytes, or a valid file cut short, or with some bytes overwritten."""
    kind = data.draw(st.sampled_from(["random", "truncated", "mutated"] if ext in VALID else ["random"]))
    if kind == "random":
        return data.draw(st.binary(max_size=400))
    base = data.draw(st.sampled_from(VALID[ext]))
    if kind == "truncated":
        return base[: data.draw(st.integers(0, len(base)))]
    b = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    return bytes(b)


@pytest.mark.parametrize("ext", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_readers_never_crash_on_damaged_files(tmp_path, ext, data):
    path = tmp_path / f"f{ext}"
    path.write_bytes(damaged(data, ext))
    for reader in READERS[ext]:
        try:
            reader(path)
        except GeodiffError as exc:
            assert "\n" not in str(exc).strip()


@FUZZ
@given(pts=st.lists(st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 3), max_size=12))
def test_check_cloud_accepts_or_refuses_with_a_geodiff_error(pts):
    try:
        out = check_cloud("cloud", np.array(pts, dtype=np.float64).reshape(-1, 3))
    except GeodiffError:
        return
    assert out.shape[0] >= 3 and np.isfinite(out).all()


ELEMENTS = [1, 6, 7, 8, 9, 16, 17]


@st.composite
def molecules(draw):
    n = draw(st.integers(1, 9))
    z = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    pos = draw(st.lists(st.floats(-4, 4, allow_nan=False), min_size=3 * n, max_size=3 * n))
    charges = draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    bonds = [(i, j, draw(st.integers(1, 4))) for i, j in chosen]
    return Molecule3D(z, pos, charges, np.array(bonds, dtype=np.int64).reshape(-1, 3))


@FUZZ
@given(
    mols=st.lists(molecules(), min_size=1, max_size=6), method=st.sampled_from(["generated", "edm", "rdkit"])
)
def test_molecule_metrics_on_random_molecules(mols, method):
    bonded, failures = perceive(mols, method)
    m = molecule_metrics(bonded)
    for k in ("atom_stability", "mol_stability", "validity", "connected_validity", "uniqueness"):
        assert 0.0 <= m[k] <= 1.0, (k, m[k])
    if len(mols) == 1:  # one molecule: stable only if every atom is
        assert m["mol_stability"] <= m["atom_stability"] + 1e-12
    assert m["connected_validity"] <= m["validity"] + 1e-12
    assert len(failures) <= len(mols)


@FUZZ
@given(
    angles=st.lists(st.floats(-np.pi, np.pi), min_size=6, max_size=6),
    t=st.lists(st.floats(-100, 100), min_size=6, max_size=6),
    diameter=st.floats(1e-3, 1e3),
    unit=st.sampled_from(["mm", "m", "cm", "unitless"]),
)
def test_pose_metrics_are_finite_and_bounded(angles, t, diameter, unit):
    from geodiff.data.shapes import euler_rotation

    h = np.tile(np.eye(4), (2, 1, 1))
    h[:, :3, :3] = euler_rotation(np.reshape(angles, (2, 3)))
    h[:, :3, 3] = np.reshape(t, (2, 3))
    model = np.random.default_rng(0).normal(size=(2, 20, 3))
    per = pose_metrics(h[:1], h[1:], model[:1], diameter, unit)
    assert 0 <= per["rotation_error_deg"][0] <= 180 + 1e-6
    assert per["add_s"][0] <= per["add"][0] + 1e-9
    s = summarize_pose_metrics(per)
    assert all(np.isfinite(v) for v in s.values())
    same = pose_metrics(h[:1], h[:1], model[:1], diameter, unit)
    assert same["rotation_error_deg"][0] < 1e-3 and same["add"][0] < 1e-9
