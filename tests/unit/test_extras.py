"""A command that needs an optional extra says which, in one line, when it is missing."""

import importlib.util

import pytest

from geodiff.errors import GeodiffError, require_extra
from geodiff.metrics.docking import DockingBox, dock_molecules


def _without(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a))


def test_require_extra_names_the_extra(monkeypatch):
    _without(monkeypatch, "vina")
    with pytest.raises(GeodiffError, match=r"^docking needs vina: pip install 'geodiff\[docking\]'$"):
        require_extra("docking", "docking", "vina", "meeko")
    require_extra("plots", "dev", "matplotlib")  # present: nothing happens


def test_docking_without_vina_is_one_line(monkeypatch, tmp_path):
    from rdkit import Chem

    _without(monkeypatch, "vina")
    receptor = tmp_path / "r.pdbqt"
    receptor.write_text("ATOM      1  C   ALA A   1       0.000   0.000   0.000  1.00  0.00     0.000 C\n")
    with pytest.raises(GeodiffError, match=r"geodiff\[docking\]"):
        dock_molecules([Chem.MolFromSmiles("CCO")], receptor, DockingBox((0, 0, 0), (10, 10, 10)))
