"""Stability conventions by name, each against the verdicts its reference code gives.

The expectations come from reading the references: EQGAT-diff's ``check_stability`` and its
``allowed_bonds`` (tuanle618/eqgat-diff, eqgat_diff/experiments/sampling/utils.py: lines 22-44 the table, the
function below it): ``edge_types[edge_types == 4] = 1.5`` on the int64 bond matrix of ``Molecule``
(experiments/molecule_utils.py asserts ``bond_types.dtype == torch.long``), so an aromatic bond counts 1;
``valencies = torch.sum(edge_types, dim=-1).long()``; a charge missing from an element's dict uses its 0
entry; an int or list entry applies to every charge. MiDi's ``check_stability`` uses the same table and code.
EDM (e3_diffusion_for_molecules, qm9/analyze.py) checks the element only. ``strict`` is geodiff's own rule.
"""

import numpy as np
import pytest

from geodiff.data.structures import Molecule3D
from geodiff.errors import GeodiffError
from geodiff.metrics.chemistry import stability, valence_table


def mol(atoms, bonds, charges=None):
    """A molecule from element symbols and (i, j, type) bonds; positions do not matter to stability."""
    from geodiff.data.structures import atomic_number

    z = [atomic_number(a) for a in atoms]
    pos = np.arange(len(z) * 3, dtype=float).reshape(-1, 3)
    return Molecule3D(z, pos, charges or [0] * len(z), np.array(bonds, dtype=np.int64).reshape(-1, 3))


def methyl():  # CH3: neutral C with 3 bonds
    return mol("CHHH", [(0, 1, 1), (0, 2, 1), (0, 3, 1)])


def furan():  # aromatic ring O (two aromatic bonds): 1.5 + 1.5 = 3 under strict, 1 + 1 = 2 under eqgat
    atoms = "OCCCCHHHH"
    ring = [(0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 4, 4), (4, 0, 4)]
    return mol(atoms, ring + [(1, 5, 1), (2, 6, 1), (3, 7, 1), (4, 8, 1)])


def benzene():
    ring = [(k, (k + 1) % 6, 4) for k in range(6)]
    return mol("CCCCCCHHHHHH", ring + [(k, k + 6, 1) for k in range(6)])


CASES = [  # (name, molecule, {convention: molecule stable?})
    ("CH3 radical", methyl(), {"strict": False, "eqgat": True, "midi": True, "edm": False}),
    ("NH2 radical", mol("NHH", [(0, 1, 1), (0, 2, 1)]), {"strict": False, "eqgat": True, "edm": False}),
    ("N+ with 3 bonds", mol("NHHH", [(0, 1, 1), (0, 2, 1), (0, 3, 1)], [1, 0, 0, 0]),
     {"strict": False, "eqgat": True, "edm": True}),
    ("NH4+", mol("NHHHH", [(0, k, 1) for k in range(1, 5)], [1, 0, 0, 0, 0]),
     {"strict": True, "eqgat": True, "edm": False}),
    ("benzene, aromatic", benzene(), {"strict": True, "eqgat": True, "edm": True}),  # C: 4, or 3 (eqgat)
    ("furan, aromatic", furan(), {"strict": False, "eqgat": True}),
    ("C+2 with 4 bonds (charge not in the table: as neutral)",
     mol("CHHHH", [(0, k, 1) for k in range(1, 5)], [2, 0, 0, 0, 0]), {"strict": False, "eqgat": True}),
    ("Cl+ with 1 bond (an int entry: any charge)", mol(["Cl", "H"], [(0, 1, 1)], [1, 0]),
     {"strict": False, "eqgat": True, "edm": True}),
    ("H+ with no bond", mol("H", [], [1]), {"strict": False, "eqgat": True}),
    ("Li (in no table)", mol(["Li", "H"], [(0, 1, 1)]), {"strict": False, "eqgat": False, "edm": False}),
]  # fmt: skip


@pytest.mark.parametrize("name, m, expected", CASES, ids=[c[0] for c in CASES])
def test_each_convention_gives_its_reference_verdict(name, m, expected):
    for table, stable in expected.items():
        s = stability([m], table=table)
        assert bool(s["stable"][0]) is stable, (name, table)


def test_atom_stability_counts_atoms_and_names_are_checked():
    s = stability([methyl(), furan()], table="strict")
    assert s["mol_stability"] == 0.0  # CH3's C and furan's O
    assert s["atom_stability"] == pytest.approx(11 / 13)
    assert stability([methyl()], table="charged")["mol_stability"] == 0.0  # the old name of strict
    assert valence_table("charged") == "strict"
    with pytest.raises(GeodiffError, match="valence_table: 'mmff' is not one of strict, eqgat, midi, edm"):
        stability([methyl()], table="mmff")


def test_qm9_itself_is_stable_under_each_convention(qm9_npz, tmp_path):
    """QM9's own molecules, bonds perceived by RDKit and kekulized as the training data: every convention
    calls (nearly) all of them stable; the charge-aware ones all of them."""
    from geodiff.data.molecules import MoleculeDataset

    ds = MoleculeDataset.from_qm9_npz(qm9_npz, cache_dir=tmp_path, limit=500, progress=False)
    mols = [ds[i].decode(ds.vocab) for i in range(len(ds))]
    for table in ("strict", "eqgat", "midi"):
        assert stability(mols, table=table)["mol_stability"] == 1.0, table
    assert stability(mols, table="edm")["mol_stability"] > 0.95  # charged atoms (N+, O-) break EDM's rule
