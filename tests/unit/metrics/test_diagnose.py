"""geodiff.metrics.diagnose and eval/unstable_kinds.py on molecules built with RDKit, broken on purpose."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from geodiff.data.structures import Molecule3D, from_rdkit
from geodiff.metrics.diagnose import diagnose_unstable, orders_exist

ROOT = Path(__file__).resolve().parents[3]


def embedded(smiles: str) -> Molecule3D:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return from_rdkit(mol, smiles)


def with_orders(m: Molecule3D, changes: dict[tuple[int, int], int]) -> Molecule3D:
    """``m`` with the order of bond (i, j) set to ``changes[(i, j)]`` (0 removes it, a new pair adds it)."""
    bonds = {(int(i), int(j)): int(o) for i, j, o in m.bonds}
    bonds.update(changes)
    rows = [(i, j, o) for (i, j), o in sorted(bonds.items()) if o]
    return m.with_bonds(np.array(rows, dtype=np.int64))


def butadiene_shifted() -> Molecule3D:
    """C=C-C=C written as C-C=C-C: both end carbons one short, fixable by moving the double bonds."""
    m = embedded("C=CC=C")
    heavy = {
        (int(i), int(j)): int(o) for i, j, o in m.bonds if m.atomic_numbers[i] > 1 and m.atomic_numbers[j] > 1
    }
    assert heavy == {(0, 1): 2, (1, 2): 1, (2, 3): 2}
    return with_orders(m, {(0, 1): 1, (1, 2): 2, (2, 3): 1})


def test_orders_exist_finds_a_valid_assignment_on_the_same_graph():
    good = embedded("c1ccoc1")  # furan, kekulized
    assert orders_exist(good)
    assert orders_exist(with_orders(good, {(int(i), int(j)): 1 for i, j, _ in good.bonds}))  # all single
    assert orders_exist(butadiene_shifted())
    h = [k for k, z in enumerate(good.atomic_numbers) if z == 1]
    assert not orders_exist(with_orders(good, {(h[0], h[1]): 1}))  # an H-H bond: no orders fix that
    ion = embedded("C[NH3+]")  # N+ with 4 bonds is allowed by the charge-aware table, not by EDM's
    assert orders_exist(ion) and not orders_exist(ion, table="edm")


def test_kinds_and_geometry_of_broken_molecules():
    stable = embedded("CC(=O)N")
    methane = embedded("C")
    radical = methane.with_bonds(methane.bonds[:-1])  # a C-H bond dropped: C valence 3, a lone H
    h = [k for k, z in enumerate(methane.atomic_numbers) if z == 1]
    extra = with_orders(methane, {(h[0], h[1]): 1})  # two H bonded to each other: valence 2
    mixed = with_orders(butadiene_shifted(), {(0, 1): 0, (1, 2): 3})  # C0 and C3 short, C2 with five
    mols = [stable, butadiene_shifted(), radical, extra, mixed]
    result = diagnose_unstable(mols)
    assert result["num_molecules"] == 5 and result["num_unstable"] == 4
    kinds = {r["index"]: r["kind"] for r in result["molecules"]}
    assert kinds == {1: "bond orders", 2: "too few bonds", 3: "too many bonds", 4: "both"}
    assert result["kinds"] == {"bond orders": 1, "too few bonds": 1, "too many bonds": 1, "both": 1}
    # their coordinates are those of good molecules: RDKit's bonds from 3D would make all four stable
    assert result["geometry_stable"] == 4
    assert diagnose_unstable(mols, geometry=False)["geometry_stable"] is None


def run_script(*args):
    return subprocess.run([sys.executable, str(ROOT / "eval" / "unstable_kinds.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip


def test_unstable_kinds_script(tmp_path):
    from geodiff.data.structures import to_rdkit

    sdf = tmp_path / "samples.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        for m in (embedded("CCO"), butadiene_shifted(), embedded("C").with_bonds(embedded("C").bonds[:-1])):
            w.write(to_rdkit(m))
    with open(sdf, "a") as f:
        f.write("garbage\n  not a molfile\n$$$$\n")
    js = tmp_path / "kinds.json"
    r = run_script(sdf, "--json", js)
    assert r.returncode == 0, r.stderr
    assert "3 molecules (1 unreadable records skipped), 2 unstable" in r.stdout
    assert "stable with RDKit's bonds from the 3D coordinates: 2 of 2" in r.stdout
    d = json.loads(js.read_text())
    assert d["kinds"]["bond orders"] == 1 and d["kinds"]["too few bonds"] == 1 and d["skipped"] == 1
    bad = tmp_path / "empty.sdf"
    bad.write_text("")
    r = run_script(bad)
    assert r.returncode == 2 and r.stderr.startswith("unstable_kinds.py: error:")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("table", ["charged", "edm"])
def test_stable_molecules_are_not_listed(table):
    result = diagnose_unstable([embedded("c1ccccc1O"), embedded("CC#N")], table=table)
    assert result["num_unstable"] == 0 and result["molecules"] == []
