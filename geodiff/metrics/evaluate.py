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
from geodiff.metrics.novelty import TRAINING_SMILES, SmilesSet

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


def training_smiles_of(folder: str | os.PathLike) -> SmilesSet | None:
    """The hashed training SMILES of a molecule model's export folder, or None when the export does not carry
    them (exports made before they were stored): novelty is then unavailable."""
    folder = Path(folder)
    if not (folder / "molecules.json").is_file():
        raise GeodiffError(f"training_set: {folder} is not a molecule model export (no molecules.json)")
    path = folder / TRAINING_SMILES
    return SmilesSet.load(path) if path.is_file() else None


def evaluate_molecule_file(samples: str | os.PathLike, reference: str | os.PathLike | None = None,
                           bonds: str = "auto", valence_table: str = "strict",
                           reference_limit: int | None = None, max_atoms: int = MAX_ATOMS,
                           training_set: str | os.PathLike | None = None,
                           reference_bonds: str = "auto") -> dict:  # fmt: skip
    """Read ``samples`` (SDF, XYZ or QM9-layout npz), evaluate, list the records that could not be read
    (molecules of more than ``max_atoms`` atoms among them). Novelty: against ``training_set`` (a molecule
    model's export folder that carries its training SMILES; ``report["novelty"]`` is None when it does not) or
    against ``reference``, whose bonds are its own or, without any, perceived with ``reference_bonds``
    (``auto``: as the samples' bonds are perceived; ``rdkit``: as geodiff's QM9 training perceives them)."""
    if bonds not in ("auto", "edm", "rdkit", "generated"):
        raise GeodiffError(f"bonds: {bonds!r} is not one of auto, edm, rdkit, generated")
    valence_table = check_valence_table(valence_table)
    mols, failures = read_molecules(samples, max_atoms=check_count("max_atoms", max_atoms, minimum=1))
    if not mols:
        raise GeodiffError(f"{samples}: no readable molecules ({unreadable(failures)})")
    if reference_bonds not in ("auto", "edm", "rdkit"):
        raise GeodiffError(f"reference_bonds: {reference_bonds!r} is not one of auto, edm, rdkit")
    ref_mols, ref_smiles = (None, None)
    if reference:
        how = _bond_method(mols, bonds) if reference_bonds == "auto" else reference_bonds
        ref_mols, ref_smiles = read_reference(reference, how, reference_limit)
    train = training_smiles_of(training_set) if training_set else None
    novelty_set = train if train is not None else ref_smiles
    report = evaluate_molecules(mols, bonds, valence_table, ref_mols, novelty_set)
    report["samples"] = str(samples)
    report["reference"] = str(reference) if reference else None
    if training_set:
        if train is None:
            report["novelty"] = None  # unavailable, not 100 %
        model = Path(training_set).name  # the shipped name or the export folder's name, not a machine path
        report["novelty_against"] = f"training molecules of {model}" if train is not None else None
    report["unreadable"] = [{"record": n, "reason": r} for n, r in failures]
    return report


def format_report(report: dict) -> str:
    """A readable table of a report (percentages for fractions)."""
    rows = [("molecules", f"{report['num_molecules']}"), ("bonds", report["bonds"]),
            ("valence table", report["valence_table"])]  # fmt: skip
    for key, label in [("atom_stability", "atom stability"), ("mol_stability", "molecule stability"),
                       ("validity", "validity"), ("connected_validity", "connected validity"),
                       ("validity_no_implicit_h", "valid, no implicit H"),
                       ("connected", "connected (one fragment)"), ("uniqueness", "uniqueness (of valid)"),
                       ("novelty", "novelty")]:  # fmt: skip
        if key == "novelty" and key in report and report[key] is None:
            rows.append((label, "unavailable (the model's export carries no training SMILES)"))
        elif key in report:
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
