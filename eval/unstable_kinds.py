"""What is wrong with the unstable molecules of an SDF of generated molecules (geodiff.metrics.diagnose).

    .venv/bin/python eval/eval_molecules.py --ckpt checkpoints/qm9_eqgat_small --n 250 --sampler ddim \
        --steps 100 --batch-size 250 --sdf samples.sdf
    .venv/bin/python eval/unstable_kinds.py samples.sdf --json kinds.json

Every unstable molecule (its bonds as written, charge-aware valences; ``--table edm`` for EDM's table) gets a
kind: ``bond orders`` (the same bonds with other orders would be stable, e.g. a double bond one position
off), ``too few bonds`` / ``too many bonds`` (no orders on this graph work; every unstable atom has too low /
too high a bond-order sum: a missing or extra hydrogen or bond) or ``both``. It also says how many of them
RDKit's bonds perceived from the 3D coordinates alone (same elements and charges) would make stable: where
few would, the structure itself is off, not just the bond labels. Unreadable records are counted and
skipped; an unreadable file exits 2 with a one-line error.
"""

from __future__ import annotations

import argparse
import sys

from geodiff.data.structures import read_sdf
from geodiff.io import write_json
from geodiff.metrics.diagnose import KINDS, diagnose_unstable


def report(result: dict, skipped: int) -> str:
    n, bad = result["num_molecules"], result["num_unstable"]
    share = 100 * bad / max(n, 1)
    lines = [f"{n} molecules ({skipped} unreadable records skipped), {bad} unstable ({share:.1f} %)"]
    for kind in KINDS:
        k = result["kinds"][kind]
        lines.append(f"  {kind:<15} {k:>6}  ({100 * k / max(bad, 1):5.1f} % of the unstable)")
    if result["geometry_stable"] is not None:
        g = result["geometry_stable"]
        lines.append(f"  stable with RDKit's bonds from the 3D coordinates: {g} of {bad}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    ap.add_argument("sdf", help="generated molecules with bonds (an SDF, or a folder of them)")
    ap.add_argument("--table", choices=("charged", "edm"), default="charged", help="valence table")
    ap.add_argument("--no-geometry", action="store_true", help="skip the RDKit bonds-from-3D check")
    ap.add_argument("--json", help="also write the result, with every unstable molecule's kind, here")
    args = ap.parse_args(argv)
    mols, failures = read_sdf(args.sdf)
    if not mols:
        why = failures[0][1] if failures else "no records"
        print(f"unstable_kinds.py: error: {args.sdf}: no molecules read ({why})", file=sys.stderr)
        return 2
    result = diagnose_unstable(mols, table=args.table, geometry=not args.no_geometry)
    print(report(result, len(failures)))
    if args.json:
        result = {"sdf": args.sdf, "table": args.table, "skipped": len(failures), **result}
        write_json(args.json, result)
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
