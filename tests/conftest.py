"""Shared fixtures: real data from ../shared/data when present (also the data path of every config and
CLI run of the suite: ``GEODIFF_DATA``, unless the caller set it). Derived files (prepared receptors) go to
a fresh ``GEODIFF_CACHE`` per test session, not the user's ~/.cache."""

import os
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("GEODIFF_DATA", str(SHARED_DATA))
os.environ.setdefault("GEODIFF_CACHE", tempfile.mkdtemp(prefix="geodiff-cache-"))


@pytest.fixture(scope="session")
def qm9_npz() -> Path:
    path = SHARED_DATA / "qm9" / "test.npz"
    if not path.is_file():
        pytest.skip("../shared/data/qm9/test.npz not present")
    return path


@pytest.fixture(scope="session")
def qm9_small(qm9_npz, tmp_path_factory):
    """The first 300 real QM9 molecules with RDKit-perceived bonds (cached for the session)."""
    from geodiff.data.molecules import MoleculeDataset

    cache = tmp_path_factory.mktemp("qm9_cache")
    return MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=cache, limit=300, num_workers=1, progress=False)


@pytest.fixture(scope="session")
def tudl_dir() -> Path:
    path = SHARED_DATA / "registration" / "tudl"
    if not (path / "models_info.json").is_file():
        pytest.skip("../shared/data/registration/tudl not present")
    return path
