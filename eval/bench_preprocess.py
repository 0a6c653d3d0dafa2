"""Benchmark: ``geodiff data molecules`` (SDF -> sharded cache) throughput and peak memory at GEOM scale.

    .venv/bin/python eval/bench_preprocess.py [--sizes 10000 100000 1000000] [--json F]

Input: the GEOM-like SDF of ``eval/bench_data.py`` (RDKit's CDK2 ligands, 5 ETKDG + MMFF conformers each,
235 conformers of 47 molecules) with each molecule's conformers repeated, one after the other, to about
10^4, 10^5 and 10^6 conformers, as GEOM's crude files hold tens of conformers per molecule: every record is
parsed, checked, converted and ranked by energy, and the 5 lowest-energy conformers of each molecule are kept
(as EQGAT-diff / MiDi select them). Each size runs ``build_cache`` in a fresh process; printed: input
conformers per second and the process's peak RSS (it must not grow with the input: records are streamed,
only the kept conformers are held).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))

from geodiff.io import device_description, write_json  # noqa: E402


def one(sdf: Path, out: Path) -> dict:
    import resource

    from geodiff.data.cache import build_cache

    t0 = time.perf_counter()
    index = build_cache(sdf, out, conformers=5, fractions=(0.8, 0.1, 0.1), progress=False)
    seconds = time.perf_counter() - t0
    kept = sum(s["num_conformers"] for split in index["splits"].values() for s in split["shards"])
    return {"seconds": seconds, "kept_conformers": kept,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--json", default=str(ROOT / "eval" / "results" / "bench_preprocess.json"))
    args = ap.parse_args()
    from bench_data import geom_like_sdf

    rows = []
    with tempfile.TemporaryDirectory(prefix="geodiff-bench-preprocess-") as tmp:
        work = Path(tmp)
        base = work / "base.sdf"
        n0 = geom_like_sdf(base)
        records = [r + "$$$$\n" for r in base.read_text().split("$$$$\n") if r.strip()]
        by_molecule: dict[str, list[str]] = {}
        for r in records:  # titles are cdk2_<molecule>_conf<k>
            by_molecule.setdefault(r.split("\n", 1)[0].rsplit("_conf", 1)[0], []).append(r)
        for size in args.sizes:
            copies = max(1, round(size / n0))
            sdf = work / f"x{size}.sdf"
            with open(sdf, "w") as f:  # a molecule's conformers one after the other, as in GEOM's files
                for confs in by_molecule.values():
                    for _ in range(copies):
                        f.writelines(confs)
            r = subprocess.run([sys.executable, __file__, "--one", str(sdf), str(work / f"cache{size}")],
                               capture_output=True, text=True, check=True)  # fmt: skip
            row = {"input_conformers": copies * n0, "sdf_mb": sdf.stat().st_size / 2**20,
                   **json.loads(r.stdout.strip().splitlines()[-1])}  # fmt: skip
            row["rate"] = row["input_conformers"] / row["seconds"]
            rows.append(row)
            print(f"{row['input_conformers']:>9,} conformers ({row['sdf_mb']:6.0f} MB SDF): "
                  f"{row['seconds']:7.1f} s, {row['rate']:6.0f} conformers/s, kept {row['kept_conformers']}, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB")  # fmt: skip
            sdf.unlink()
    write_json(args.json, {"command": " ".join(sys.argv), "device": device_description("cpu"), "rows": rows})
    print(f"JSON {args.json}")


if __name__ == "__main__":
    if "--one" in sys.argv:
        k = sys.argv.index("--one")
        print(json.dumps(one(Path(sys.argv[k + 1]), Path(sys.argv[k + 2]))))
    else:
        main()
