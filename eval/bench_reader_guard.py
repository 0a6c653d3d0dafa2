"""Benchmark: the cost of reading SDF records one at a time with checks before RDKit parses them (issue 35:
a record that would crash RDKit costs itself, not the run), on the 13,083 molecules of QM9's test split.

    .venv/bin/python eval/bench_reader_guard.py [--npz ../shared/data/qm9/test.npz] [--reps 3] [--json F]

The molecules (QM9 npz, bonds perceived by EDM's table) are written once as an SDF by geodiff's own
writer; then, in this process, alternating per repetition:

* baseline: RDKit's file supplier over the whole SDF (unsanitised, hydrogens kept), each molecule converted
  to a ``Molecule3D``: what ``read_sdf`` did before the guard;
* guarded: ``geodiff.data.structures.read_sdf`` (streamed records, atom-count and valence checks, one
  RDKit parse per record, the per-molecule checks of coordinates and elements);
* the whole evaluation both ways: the baseline reader then ``evaluate_molecules``, against
  ``evaluate_molecule_file`` (the guarded reader then the same metrics).

Printed: the median ratios guarded / baseline of the reading and of the whole evaluation (the issue's budget:
the evaluation within 20 % of its time before the guard).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rdkit import Chem, RDLogger  # noqa: E402

from geodiff.data.structures import from_rdkit, mol_name, read_npz, read_sdf, write_sdf  # noqa: E402
from geodiff.io import device_description, write_json  # noqa: E402
from geodiff.metrics.bonds import perceive  # noqa: E402
from geodiff.metrics.evaluate import evaluate_molecule_file, evaluate_molecules  # noqa: E402


def baseline_read(path: Path) -> list:
    RDLogger.DisableLog("rdApp.*")
    supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False, strictParsing=False)
    out = []
    for k in range(len(supplier)):
        mol = supplier[k]
        if mol is not None:
            mol.UpdatePropertyCache(strict=False)
            out.append(from_rdkit(mol, mol_name(mol) or f"#{k}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", default=str(ROOT.parent / "shared" / "data" / "qm9" / "test.npz"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "eval" / "results" / "bench_reader_guard.json"))
    args = ap.parse_args()
    mols, _ = read_npz(args.npz)
    mols, _ = perceive(mols, "edm")
    with tempfile.TemporaryDirectory() as tmp:
        sdf = write_sdf(mols, Path(tmp) / "qm9_test.sdf")
        base, guarded, eval_base, eval_guarded = [], [], [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            a = baseline_read(sdf)
            base.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b, failures = read_sdf(sdf)
            guarded.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            old = evaluate_molecules(baseline_read(sdf))
            eval_base.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            new = evaluate_molecule_file(sdf)
            eval_guarded.append(time.perf_counter() - t0)
        assert len(a) == len(b) == len(mols) and not failures
        assert all(old[k] == new[k] for k in ("validity", "mol_stability", "atom_stability", "uniqueness"))
    b0, g0 = statistics.median(base), statistics.median(guarded)
    e0, e1 = statistics.median(eval_base), statistics.median(eval_guarded)
    print(f"{len(mols):,} QM9 molecules as SDF ({device_description('cpu')}): read {b0:.2f} s -> guarded "
          f"{g0:.2f} s (ratio {g0 / b0:.3f}); whole evaluation {e0:.2f} s -> {e1:.2f} s "
          f"(ratio {e1 / e0:.3f}), the same metrics")  # fmt: skip
    write_json(args.json, {"command": " ".join(sys.argv), "molecules": len(mols), "baseline_read_s": base,
                            "guarded_read_s": guarded, "evaluation_baseline_s": eval_base,
                            "evaluation_guarded_s": eval_guarded, "ratio_read": g0 / b0,
                            "ratio_evaluation": e1 / e0})  # fmt: skip


if __name__ == "__main__":
    main()
