"""Point-cloud files (PLY ascii / binary both byte orders / polygons, OFF, XYZ, NPY), degenerate-cloud checks,
surface sampling, ModelNet40 HDF5, TUD-L models, procedural shapes and the RPMNet-protocol pairs."""

from pathlib import Path

import numpy as np
import pytest

from geodiff.data.pairs import PairConfig, benchmark_pairs, load_pairs, make_pair, save_pairs
from geodiff.data.pointclouds import (
    PointCloud,
    check_cloud,
    cloud_diameter,
    load_modelnet40_h5,
    load_point_cloud,
    load_tudl_models,
    read_off,
    read_ply,
    write_ply,
)
from geodiff.data.shapes import euler_rotation, procedural_mesh, sample_surface
from geodiff.errors import GeodiffError, GeodiffValueError

TUDL = Path(__file__).resolve().parents[4] / "shared" / "data" / "registration" / "tudl"

# a unit square in z = 0 as one quad (ascii) -> two triangles
SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float64)


def _binary_ply(path, order, pts, nrm, quads):
    head = ["ply", f"format binary_{'little' if order == '<' else 'big'}_endian 1.0", "comment test",
            f"element vertex {len(pts)}", "property float x", "property float y", "property float z",
            "property float nx", "property float ny", "property float nz", "property uchar red",
            f"element face {len(quads)}", "property list uchar int vertex_indices",
            "element extra 1", "property double w", "end_header"]  # fmt: skip
    vdt = np.dtype([("p", order + "f4", (3,)), ("n", order + "f4", (3,)), ("c", "u1")])
    v = np.zeros(len(pts), vdt)
    v["p"], v["n"], v["c"] = pts, nrm, 7
    fdt = np.dtype([("k", "u1"), ("i", order + "i4", (4,))])
    f = np.zeros(len(quads), fdt)
    f["k"], f["i"] = 4, quads
    extra = np.array([3.5], order + "f8")
    path.write_bytes(("\n".join(head) + "\n").encode() + v.tobytes() + f.tobytes() + extra.tobytes())


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_ply_both_byte_orders_with_extra_properties_and_quads(tmp_path, order):
    rng = np.random.default_rng(0)
    pts, nrm = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    _binary_ply(tmp_path / "m.ply", order, pts, nrm, [[0, 1, 2, 3], [2, 3, 4, 5]])
    m = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(m.points, pts.astype(np.float64))
    np.testing.assert_array_equal(m.normals, nrm.astype(np.float64))
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [2, 3, 4], [0, 2, 3], [2, 4, 5]])
    assert m.points.dtype == np.float64 and len(m) == 6


def test_ascii_ply_with_mixed_polygons_and_round_trip(tmp_path):
    text = "\n".join(["ply", "format ascii 1.0", "element vertex 5", "property float x", "property float y",
                      "property float z", "element face 2", "property list uchar int vertex_indices",
                      "end_header", "0 0 0", "1 0 0", "1 1 0", "0 1 0", "0.5 0.5 1", "4 0 1 2 3",
                      "3 0 1 4", ""])  # fmt: skip
    (tmp_path / "a.ply").write_text(text)
    m = read_ply(tmp_path / "a.ply")
    assert m.normals is None and m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]
    out = write_ply(tmp_path / "o" / "b.ply", m.points, np.ones((5, 3)), m.faces)
    back = load_point_cloud(out)
    np.testing.assert_array_equal(back.points, m.points)
    np.testing.assert_array_equal(back.faces, m.faces)
    np.testing.assert_array_equal(back.normals, np.ones((5, 3)))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # atomic: no temp left
    empty = read_ply(write_ply(tmp_path / "e.ply", m.points, None, np.zeros((0, 3), int)))  # "element face 0"
    assert empty.faces.shape == (0, 3) and len(empty) == 5


@pytest.mark.parametrize(
    "body, message",
    [
        ("plx\nformat ascii 1.0\nend_header\n", "bad PLY header"),
        ("ply\nformat ascii 1.0\nelement vertex 2\nproperty flaot x\nend_header\n", "bad PLY header"),
        ("ply\nformat ascii 2\nelement vertex 1\nproperty float x\nend_header\n1\n", "bad PLY header"),
        (
            "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            "end_header\n0 0 0\n1 1 1\n",
            "truncated",
        ),
        (
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            "end_header\n0 zero 0\n",
            "malformed",
        ),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float u\nend_header\n0\n", "without vertex x"),
        (
            "ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nend_header\n\x00\x00",
            "truncated or malformed",
        ),
    ],
)
def test_malformed_ply_is_one_line_error(tmp_path, body, message):
    (tmp_path / "bad.ply").write_bytes(body.encode("latin-1"))
    with pytest.raises(GeodiffError, match=message) as e:
        read_ply(tmp_path / "bad.ply")
    assert "\n" not in str(e.value) and "bad.ply" in str(e.value)


def test_off_including_modelnet_glued_header_and_text_and_npy(tmp_path):
    (tmp_path / "a.off").write_text("OFF\n# comment\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    (tmp_path / "b.off").write_text("OFF4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    for name in ("a.off", "b.off"):
        m = read_off(tmp_path / name)
        np.testing.assert_array_equal(m.points, SQUARE)
        assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "c.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n")
    with pytest.raises(GeodiffError, match="malformed OFF"):
        read_off(tmp_path / "c.off")
    np.savetxt(tmp_path / "p.xyz", np.c_[SQUARE, np.ones((4, 3))])
    m = load_point_cloud(tmp_path / "p.xyz")
    np.testing.assert_array_equal(m.points, SQUARE)
    np.testing.assert_array_equal(m.normals, np.ones((4, 3)))
    np.save(tmp_path / "p.npy", SQUARE)
    assert load_point_cloud(tmp_path / "p.npy").normals is None
    (tmp_path / "q.xyz").write_text("0 0 0\n1 2\n")
    with pytest.raises(GeodiffError, match="malformed point file"):
        load_point_cloud(tmp_path / "q.xyz")
    np.save(tmp_path / "r.npy", np.zeros((4, 2)))
    with pytest.raises(GeodiffError, match="3 columns"):
        load_point_cloud(tmp_path / "r.npy")
    with pytest.raises(GeodiffError, match="unknown point-cloud format"):
        load_point_cloud(tmp_path / "p.stl")
    with pytest.raises(GeodiffError, match="no such file"):
        load_point_cloud(tmp_path / "missing.ply")


def test_check_cloud_refuses_degenerate_clouds():
    good = np.random.default_rng(0).normal(size=(10, 3))
    assert check_cloud("x", good.tolist()).dtype == np.float64
    nan = good.copy()
    nan[2, 0] = np.nan
    cases = [(np.zeros((0, 3)), "empty"), (np.zeros((5, 2)), r"\[N, 3\]"), (nan, "1 points with NaN"),
             (good[:2], "at least 3"), (np.ones((9, 3)), "identical"),
             (np.outer(np.arange(6.0), [1, 2, 3]), "one line")]  # fmt: skip
    for cloud, msg in cases:
        with pytest.raises(GeodiffValueError, match=msg):
            check_cloud("cloud", cloud)
    # a flat (planar) cloud is fine: its rotation is defined
    check_cloud("plane", np.c_[good[:, :2], np.zeros(10)])


def test_surface_samples_lie_on_the_mesh_and_follow_area():
    rng = np.random.default_rng(0)
    # two triangles in z=0 with areas 1/2 (unit square half) and 2 (a triangle 2x2)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [7, 0, 0], [5, 2, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    pts, nrm = sample_surface(v, f, 20000, rng)
    assert np.allclose(pts[:, 2], 0) and np.allclose(np.abs(nrm[:, 2]), 1)
    first = pts[:, 0] < 2
    assert abs(first.mean() - 0.2) < 0.01  # area 0.5 of 2.5
    assert (pts[first, 0] + pts[first, 1] <= 1 + 1e-12).all() and (pts[first] >= -1e-12).all()
    with pytest.raises(GeodiffValueError, match="zero surface area"):
        sample_surface(np.zeros((3, 3)), [[0, 1, 2]], 5, rng)


def test_euler_rotation_is_a_rotation_and_composes_axes():
    r = euler_rotation(np.random.default_rng(0).normal(size=(4, 3)))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1)
    a, b, c = 0.3, -0.4, 1.1
    rx = euler_rotation([a, 0, 0])
    assert rx[0, 0] == 1 and rx[2, 1] == pytest.approx(np.sin(a))
    np.testing.assert_allclose(euler_rotation([a, b, c]), euler_rotation([0, 0, c]) @ euler_rotation(
        [0, b, 0]) @ rx, atol=1e-15)  # fmt: skip


def test_procedural_meshes_are_seeded_watertight_enough_and_in_the_unit_sphere():
    a, b = procedural_mesh(np.random.default_rng(5)), procedural_mesh(np.random.default_rng(5))
    np.testing.assert_array_equal(a.points, b.points)
    for seed in range(10):
        m = procedural_mesh(np.random.default_rng(seed))
        assert np.linalg.norm(m.points, axis=1).max() == pytest.approx(1.0)
        assert m.faces.min() >= 0 and m.faces.max() < len(m.points)
        pts, _ = sample_surface(m.points, m.faces, 500, np.random.default_rng(seed))
        assert 1.0 < cloud_diameter(pts) <= 2.0


def _pair_objects():
    rng = np.random.default_rng(0)
    return [{"mesh": procedural_mesh(rng), "diameter": 2.0, "name": f"s{i}"} for i in range(3)]


def test_pair_protocol_pose_angles_translation_noise_and_crop():
    objs = _pair_objects()
    cfg = PairConfig(num_points=400, max_angle=30, max_translation=0.5)
    pairs = benchmark_pairs(objs, cfg, 12, seed=3)
    for p in pairs:
        r, t = p.pose[:3, :3], p.pose[:3, 3]
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        # the angle of a rotation with Euler angles in [-30, 30] per axis is below 30 sqrt(3) degrees
        ang = np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))
        assert ang < 30 * np.sqrt(3) and (np.abs(t) <= 0.5 * 1.0).all()
        assert p.source.shape == p.target.shape == (400, 3) and p.model.shape == (1024, 3)
        # independent samples of one surface: the true pose brings the source close to the target (not onto)
        moved = p.source @ r.T + t
        d = np.linalg.norm(moved[:, None] - p.target[None], axis=-1).min(1)
        off = p.source @ (r @ euler_rotation(np.deg2rad([20, 0, 0]))).T + t  # a pose 20 degrees off
        d_off = np.linalg.norm(off[:, None] - p.target[None], axis=-1).min(1)
        own = np.linalg.norm(p.source[:, None] - p.source[None], axis=-1) + 1e9 * np.eye(400)
        spacing = own.min(1).mean()  # the sampling density bounds how close independent samples get
        assert 0 < d.mean() < 1.3 * spacing < d_off.mean() * 1.3 and d.mean() < d_off.mean()
        assert not np.allclose(p.source, p.model[:400])
    assert [p.name for p in pairs[:4]] == ["s0", "s1", "s2", "s0"]
    # pair i depends only on (seed, i)
    again = benchmark_pairs(objs, cfg, 3, seed=3)
    np.testing.assert_array_equal(again[2].target, pairs[2].target)
    assert not np.array_equal(benchmark_pairs(objs, cfg, 1, seed=4)[0].pose, pairs[0].pose)

    clean = make_pair(objs[0]["mesh"], PairConfig(num_points=300), np.random.default_rng(1), 2.0)
    noisy = make_pair(objs[0]["mesh"], PairConfig(num_points=300, noise=0.01, clip=0.02),
                      np.random.default_rng(1), 2.0)  # fmt: skip
    jitter = noisy.source - clean.source  # the same draws up to the jitter
    assert 0 < np.abs(jitter).max() <= 0.02 * 1.0 + 1e-12
    assert np.std(jitter) == pytest.approx(0.01, rel=0.2)

    part = make_pair(objs[1]["mesh"], PairConfig(num_points=200, keep=0.7), np.random.default_rng(2), 2.0)
    assert part.source.shape == (140, 3) and part.target.shape == (140, 3)
    # a half-space crop: some plane separates the kept points from the dropped ones
    full = make_pair(objs[1]["mesh"], PairConfig(num_points=200), np.random.default_rng(2), 2.0)
    assert cloud_diameter(part.source) <= cloud_diameter(full.model) + 1e-9


def test_pair_config_validation():
    for kw, msg in [({"keep": 0}, "keep"), ({"keep": 1.5}, "keep"), ({"num_points": 2}, "num_points"),
                    ({"max_angle": 200}, "max_angle"), ({"noise": -1}, "noise"),
                    ({"num_points": 4, "keep": 0.5}, "fewer than 3")]:  # fmt: skip
        with pytest.raises(GeodiffValueError, match=msg):
            PairConfig(**kw)
    with pytest.raises(GeodiffValueError, match="no objects"):
        benchmark_pairs([], PairConfig(), 3)


def test_pairs_of_a_point_cloud_object_and_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(300, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    objs = [{"mesh": PointCloud(sphere), "unit": "unitless", "name": "ball"}] + _pair_objects()[:1]
    pairs = benchmark_pairs(objs, PairConfig(num_points=128, keep=0.8, noise=0.01), 4, seed=0)
    assert 1.9 < pairs[0].diameter <= 2.0 and pairs[0].name == "ball" and pairs[1].diameter == 2.0
    # a point-cloud object: source points are drawn from its points (before jitter)
    out = save_pairs(tmp_path / "pairs.npz", pairs, source="test", keep=0.8)
    back, meta = load_pairs(out)
    assert meta == {"source": "test", "keep": 0.8} and len(back) == 4
    for a, b in zip(pairs, back, strict=True):
        for k in ("source", "target", "model", "pose"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        assert (a.diameter, a.unit, a.name) == (b.diameter, b.unit, b.name)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(GeodiffError, match="not a registration pairs file"):
        load_pairs(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_text("no zip here")
    with pytest.raises(GeodiffError, match="not an npz"):
        load_pairs(tmp_path / "junk.npz")


def test_modelnet40_h5_folder(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    for i, n in enumerate((3, 2)):
        with h5py.File(tmp_path / f"ply_data_train{i}.h5", "w") as h:
            h["data"] = rng.normal(size=(n, 64, 3)).astype(np.float32)
            h["normal"] = rng.normal(size=(n, 64, 3)).astype(np.float32)
            h["label"] = np.full((n, 1), i, dtype=np.uint8)
    mn = load_modelnet40_h5(tmp_path, "train")
    assert mn["points"].shape == (5, 64, 3) and mn["normals"].shape == (5, 64, 3)
    assert mn["labels"].tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(GeodiffError, match="no ply_data_test"):
        load_modelnet40_h5(tmp_path, "test")
    with pytest.raises(GeodiffError, match="no such"):
        load_modelnet40_h5(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ply_data_test0.h5").write_text("not hdf5")
    with pytest.raises(GeodiffError, match="not a ModelNet40 HDF5"):
        load_modelnet40_h5(tmp_path / "bad")


def test_bop_models_folder_measures_missing_diameters(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2):
        m = procedural_mesh(rng)
        write_ply(tmp_path / f"obj_{i:06d}.ply", m.points * 100, None, m.faces)
    (tmp_path / "models_info.json").write_text('{"1": {"diameter": 150.0}}')
    objs = load_tudl_models(tmp_path)
    assert [o["name"] for o in objs] == ["obj_000001", "obj_000002"]
    assert objs[0]["diameter"] == 150.0 and 100 < objs[1]["diameter"] <= 200
    with pytest.raises(GeodiffError, match="no obj_"):
        load_tudl_models(tmp_path / "..")
    with pytest.raises(GeodiffError, match="no such folder"):
        load_tudl_models(tmp_path / "nope")


@pytest.mark.skipif(not TUDL.is_dir(), reason="../shared/data/registration/tudl not present")
def test_real_tudl_meshes():
    objs = load_tudl_models(TUDL)
    assert [o["name"] for o in objs] == ["obj_000001", "obj_000002", "obj_000003"]
    assert [o["diameter"] for o in objs] == [430.31, 175.704, 352.356]
    for o in objs:
        m = o["mesh"]
        assert m.normals is not None and m.faces.shape[1] == 3 and m.faces.max() < len(m)
        # the BOP diameter is the largest vertex distance (what we measure, to 1 %)
        assert cloud_diameter(m.points) == pytest.approx(o["diameter"], rel=0.01)
    p = benchmark_pairs([dict(o, unit="mm") for o in objs], PairConfig(num_points=256, max_angle=180), 1)[0]
    assert p.unit == "mm" and p.diameter == 430.31 and np.abs(p.source).max() < 430.31
