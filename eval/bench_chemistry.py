"""Benchmark: molecule metrics on the 13,083 QM9 molecules of ../shared/data/qm9/test.npz, geodiff's
vectorised implementation against a straightforward per-atom-pair Python loop of the same EDM definitions
(geodiff.testing.chemistry_reference), in the same process. Optionally Vina docking throughput on 1iep.

    .venv/bin/python eval/bench_chemistry.py [--qm9 PATH] [--n N] [--repeats 3] [--docking] [--json OUT]

Timed parts: EDM lookup-table bonds from 3D, stability, RDKit validity (sanitisation) and uniqueness
(canonical SMILES). The numbers of both implementations must be identical (checked, not assumed). The
breakdown shows where the time goes: bond perception + stability (vectorised over all atom pairs of all
molecules) and RDKit (one sanitisation and one SMILES per molecule, the same work in both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qm9", default=str(ROOT.parent / "shared" / "data" / "qm9" / "test.npz"))
    ap.add_argument("--n", type=int, default=None, help="first N molecules (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--docking", action="store_true", help="also time Vina docking of imatinib on 1iep")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import numpy as np
    import rdkit
    import torch

    from geodiff.data.structures import read_npz
    from geodiff.metrics.bonds import edm_bonds, perceive
    from geodiff.metrics.chemistry import molecule_metrics, rdkit_validity, stability
    from geodiff.testing.chemistry_reference import loop_bond_order, loop_metrics

    mols, _ = read_npz(args.qm9)
    mols = mols[: args.n] if args.n else mols
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}, rdkit {rdkit.__version__}, torch {torch.__version__}")  # fmt: skip
    print(f"{len(mols)} QM9 molecules ({args.qm9}), best of {args.repeats}")

    keys = ("atom_stability", "mol_stability", "validity", "uniqueness")

    def fast():
        return molecule_metrics(perceive(mols, "edm")[0])

    t_fast, m_fast, r_fast = best_of(fast, args.repeats)
    t_loop, m_loop, r_loop = best_of(lambda: loop_metrics(mols), args.repeats)
    same = all(r_fast[k] == r_loop[k] for k in keys)

    # breakdown: bonds + stability alone, and the same by the loop
    t_bonds, _, bonded = best_of(
        lambda: [m.with_bonds(b) for m, b in zip(mols, edm_bonds(mols), strict=True)], args.repeats
    )
    t_stab, _, _ = best_of(lambda: stability(bonded), args.repeats)

    def loop_bonds_stability():
        from geodiff.data.structures import element_symbol
        from geodiff.metrics.chemistry import ALLOWED_VALENCES

        ok = 0
        for m in mols:
            sym = [element_symbol(z) for z in m.atomic_numbers.tolist()]
            pos = m.pos.tolist()
            val = [0] * len(sym)
            for i in range(len(sym)):
                for j in range(i + 1, len(sym)):
                    d = sum((pos[i][k] - pos[j][k]) ** 2 for k in range(3)) ** 0.5
                    o = loop_bond_order(sym[i], sym[j], d)
                    val[i] += o
                    val[j] += o
            ok += all(v in ALLOWED_VALENCES.get(s, {}).get(0, ()) for v, s in zip(val, sym, strict=True))
        return ok

    t_loop_bs, _, _ = best_of(loop_bonds_stability, args.repeats)
    t_rdkit, _, _ = best_of(lambda: rdkit_validity(bonded), args.repeats)

    print(f"{'':34}{'geodiff':>10}{'loop':>10}{'ratio':>8}")
    print(f"{'stability+validity+uniqueness (s)':34}{t_fast:10.3f}{t_loop:10.3f}{t_loop / t_fast:8.1f}x")
    print(f"{'  EDM bonds + stability (s)':34}{t_bonds + t_stab:10.3f}{t_loop_bs:10.3f}"
          f"{t_loop_bs / (t_bonds + t_stab):8.1f}x")  # fmt: skip
    print(f"{'  RDKit validity + SMILES (s)':34}{t_rdkit:10.3f}")
    print("identical numbers:", same, {k: round(r_fast[k], 6) for k in keys})
    result = {"num_molecules": len(mols), "geodiff_s": t_fast, "loop_s": t_loop, "ratio": t_loop / t_fast,
              "bonds_stability_s": t_bonds + t_stab, "loop_bonds_stability_s": t_loop_bs,
              "bonds_stability_ratio": t_loop_bs / (t_bonds + t_stab), "rdkit_s": t_rdkit,
              "identical": same, "metrics": {k: r_fast[k] for k in keys},
              "median_geodiff_s": m_fast, "median_loop_s": m_loop}  # fmt: skip
    if not same:
        raise SystemExit(f"numbers differ: {r_fast} vs {r_loop}")

    if args.docking:
        from rdkit import Chem

        from geodiff.metrics.docking import DockingBox, dock_molecules

        d = ROOT.parent / "shared" / "data" / "docking" / "1iep"
        lig = Chem.MolFromMolFile(str(d / "1iep_ligand.sdf"), removeHs=False)
        box = DockingBox.from_vina_config(d / "1iep_receptor.box.txt")
        n = os.cpu_count() or 1
        t0 = time.perf_counter()
        res, summ = dock_molecules([lig] * n, d / "1iep_receptor.pdbqt", box, mode="dock", exhaustiveness=8,
                                   seed=1, progress=False)  # fmt: skip
        dt = time.perf_counter() - t0
        print(f"docking 1iep (imatinib, exhaustiveness 8): {n} ligands in {dt:.1f} s = {60 * n / dt:.2f} "
              f"ligands/min; best {summ.get('best')}")  # fmt: skip
        result["docking"] = {"ligands": n, "seconds": dt, "ligands_per_min": 60 * n / dt, "summary": summ}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
