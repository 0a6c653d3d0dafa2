"""``geodiff evaluate task=molecules``: read a file of molecules, get bonds, compute the papers' metrics.

report = evaluate_molecule_file("samples/molecules.sdf", reference="data/qm9/test.npz")
print(format_report(report))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rdkit import Chem, RDLogger

from geodiff.data.structures import MAX_ATOMS, Molecule3D, read_molecules, unreadable
from geodiff.errors import GeodiffError, check_count
from geodiff.io import atomic_path
from geodiff.metrics.bonds import perceive
from geodiff.metrics.chemistry import molecule_metrics, most_unstable, rdkit_validity
from geodiff.metrics.chemistry import valence_table as check_valence_table

__all__ = ["evaluate_molecule_file", "evaluate_molecules", "format_report", "read_reference", "write_report"]

SMILES_SUFFIXES = (".smi", ".smiles", ".txt")


def _bond_method(mols: list[Molecule3D], bonds: str) -> str:
    if bonds == "auto":
        return "generated" if mols and all(m.bonds is not None for m in mols) else "edm"
    return bonds


def read_reference(path: str | os.PathLike, bonds: str = "edm", limit: int | None = None):
    """``(molecules or None, canonical SMILES set)`` of a reference: a SMILES file (one per line, first
    column) gives SMILES only; an SDF / XYZ / npz gives both (bonds as in the file, else ``bonds``)."""
    path = Path(path)
    if path.suffix.lower() in SMILES_SUFFIXES:
        RDLogger.DisableLog("rdApp.*")
        if not path.is_file():
            raise GeodiffError(f"reference: {path} not found")
        smiles = set()
        for line in path.read_text().splitlines()[: limit or None]:
            parts = line.split()
            mol = Chem.MolFromSmiles(parts[0]) if parts else None
            if mol is not None:
                smiles.add(Chem.MolToSmiles(mol))
        if not smiles:
            raise GeodiffError(f"reference: no readable SMILES in {path}")
        return None, smiles
    mols, _ = read_molecules(path)
    mols = mols[:limit] if limit else mols
    if not mols:
        raise GeodiffError(f"reference: no readable molecules in {path}")
    method = (
        "generated" if all(m.bonds is not None for m in mols) else ("edm" if bonds == "generated" else bonds)
    )
    mols, _ = perceive(mols, method)
    return mols, set(rdkit_validity(mols)["smiles"])


def evaluate_molecules(mols: list[Molecule3D], bonds: str = "auto", valence_table: str = "strict",
                       reference=None, reference_smiles=None) -> dict:  # fmt: skip
    """Metrics of in-memory molecules (e.g. ``pipe(...).molecules``)."""
    if not mols:
        raise GeodiffError("no molecules to evaluate")
    method = _bond_method(mols, bonds)
    with_bonds, failures = perceive(mols, method)
    report = molecule_metrics(with_bonds, table=valence_table, reference_smiles=reference_smiles,
                              reference=reference)  # fmt: skip
    report["bonds"] = method
    report["bond_perception_failures"] = [{"molecule": n, "reason": r} for n, r in failures]
    return report


def evaluate_molecule_file(samples: str | os.PathLike, reference: str | os.PathLike | None = None,
                           bonds: str = "auto", valence_table: str = "strict",
                           reference_limit: int | None = None,
                           max_atoms: int = MAX_ATOMS) -> dict:  # fmt: skip
    """Read ``samples`` (SDF, XYZ or QM9-layout npz), evaluate, list the records that could not be read
    (molecules of more than ``max_atoms`` atoms among them)."""
    if bonds not in ("auto", "edm", "rdkit", "generated"):
        raise GeodiffError(f"bonds: {bonds!r} is not one of auto, edm, rdkit, generated")
    valence_table = check_valence_table(valence_table)
    mols, failures = read_molecules(samples, max_atoms=check_count("max_atoms", max_atoms, minimum=1))
    if not mols:
        raise GeodiffError(f"{samples}: no readable molecules ({unreadable(failures)})")
    ref_mols, ref_smiles = (None, None)
    if reference:
        ref_mols, ref_smiles = read_reference(reference, _bond_method(mols, bonds), reference_limit)
    report = evaluate_molecules(mols, bonds, valence_table, ref_mols, ref_smiles)
    report["samples"] = str(samples)
    report["reference"] = str(reference) if reference else None
    report["unreadable"] = [{"record": n, "reason": r} for n, r in failures]
    return report


def format_report(report: dict) -> str:
    """A readable table of a report (percentages for fractions)."""
    rows = [("molecules", f"{report['num_molecules']}"), ("bonds", report["bonds"]),
            ("valence table", report["valence_table"])]  # fmt: skip
    for key, label in [("atom_stability", "atom stability"), ("mol_stability", "molecule stability"),
                       ("validity", "validity"), ("connected_validity", "connected validity"),
                       ("connected", "connected (one fragment)"), ("uniqueness", "uniqueness"),
                       ("novelty", "novelty")]:  # fmt: skip
        if key in report:
            rows.append((label, f"{100 * report[key]:.2f} %"))
    bad = report.get("unstable_atoms")
    if bad:  # the three most frequent unstable (element, valence) kinds
        rows.append(("most unstable atoms", f"{most_unstable(bad)}; all in the JSON"))
    dist = report.get("distributions")
    if dist:
        rows += [("atom type TV", f"{dist['atom_type_tv']:.4f}"),
                 ("atom count TV", f"{dist['num_atoms_tv']:.4f}"),
                 ("bond type TV", f"{dist['bond_type_tv']:.4f}"),
                 ("bond length W1 (A)", f"{dist['bond_length_w1']:.4f}"),
                 ("bond angle W1 (deg)", f"{dist['bond_angle_w1']:.3f}")]  # fmt: skip
    if report.get("close_atoms"):
        n = len(report["close_atoms"])
        rows.append(("invalid geometry", f"{n} molecules with atoms closer than 0.5 A (listed in the JSON)"))
    if report.get("unreadable"):
        rows.append(("unreadable records", f"{len(report['unreadable'])} (listed in the JSON)"))
    if report.get("bond_perception_failures"):
        rows.append(("bond perception failed", f"{len(report['bond_perception_failures'])}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=float))
    return path
