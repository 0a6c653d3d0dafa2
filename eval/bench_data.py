"""Benchmark: the GEOM-scale data path (``geodiff data molecules`` caches) on a GEOM-like set.

    OMP_NUM_THREADS=2 .venv/bin/python eval/bench_data.py [--sizes 10000 100000 1000000] [--json F]

The GEOM-like set: the drug-like CDK2 ligands that ship with RDKit (Contrib/Fastcluster/cdk2.smi), 5 ETKDG +
MMFF conformers each, written as a multi-conformer SDF. Measured, in one process unless said:

1. preprocessing throughput: ``build_cache`` on that SDF (conformers/s, RDKit parsing and tensor conversion
   included);
2. the scale set: the cache's training shards replicated (arrays copied, molecule ids offset, new
   checksums) to about 10^4, 10^5 and 10^6 conformers;
3. peak RSS of a fresh process that opens each cache, iterates 300 shuffled batches of 64 through a DataLoader
   with 2 workers and trains nothing (the RSS of the main process, and of the largest worker);
4. loader rate (conformers/s, collate included) with 0 and 2 workers on the 10^6 set, against the training
   rate of the CPU model (``qm9_eqgat_small`` size, 16 atom types: forward + backward + Adam on the same
   batches);
   the goal is a loader at least 5x faster than training.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodiff.data.cache import FIELDS, build_cache, read_index, shard_checksum  # noqa: E402
from geodiff.io import device_description, write_json  # noqa: E402


def geom_like_sdf(path: Path, confs: int = 5) -> int:
    import rdkit
    from rdkit import Chem
    from rdkit.Chem import AllChem

    smi = Path(rdkit.__file__).parent / "Contrib" / "Fastcluster" / "cdk2.smi"
    writer, n = Chem.SDWriter(str(path)), 0
    for k, line in enumerate(smi.read_text().splitlines()):
        mol = Chem.MolFromSmiles(line.split()[-1]) if line.strip() else None
        if mol is None:
            continue
        mol = Chem.AddHs(mol)
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=confs, randomSeed=k))
        for cid, (_, e) in zip(ids, AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=200), strict=True):
            mol.SetProp("_Name", f"cdk2_{k}_conf{cid}")
            mol.SetProp("totalenergy", repr(e))
            writer.write(mol, confId=cid)
            n += 1
    writer.close()
    return n


def replicate(src: Path, dst: Path, target: int, shard_size: int = 10000) -> int:
    """A cache whose training split is whole copies of ``src``'s training conformers, at least ``target`` of
    them (shards of whole copies, each with its own checksum); returns the number of conformers."""
    index = read_index(src)
    shards = [
        {f: np.load(src / s["dir"] / f"{f}.npy") for f in FIELDS} for s in index["splits"]["train"]["shards"]
    ]
    base = {
        f: np.concatenate([s[f] for s in shards])
        for f in FIELDS
        if f not in ("atom_ptr", "bond_ptr", "mol_id")
    }
    n_atoms = np.concatenate([np.diff(s["atom_ptr"]) for s in shards])
    n_bonds = np.concatenate([np.diff(s["bond_ptr"]) for s in shards])
    m = len(n_atoms)
    copies_per_shard = max(1, shard_size // m)
    total_copies = -(-target // m)
    out_shards, k, copies = [], 0, 0
    while copies < total_copies:
        r = min(copies_per_shard, total_copies - copies)
        d = dst / "train" / f"shard_{k:05d}"
        d.mkdir(parents=True)
        arrays = {f: np.concatenate([base[f]] * r) for f in base}
        arrays["atom_ptr"] = np.concatenate([[0], np.cumsum(np.tile(n_atoms, r))]).astype(np.int64)
        arrays["bond_ptr"] = np.concatenate([[0], np.cumsum(np.tile(n_bonds, r))]).astype(np.int64)
        arrays["mol_id"] = np.arange(copies * m, (copies + r) * m, dtype=np.int64) // 5
        for f in FIELDS:
            np.save(d / f"{f}.npy", arrays[f])
        out_shards.append({"dir": f"train/{d.name}", "num_conformers": r * m, "sha256": shard_checksum(d),
                           "num_atoms": int(arrays["atom_ptr"][-1])})  # fmt: skip
        copies, k = copies + r, k + 1
    n = total_copies * m
    empty = {"molecules": 0, "conformers": 0, "shards": []}
    new = dict(index, splits={"train": {"molecules": n // 5, "conformers": n, "shards": out_shards},
                              "val": empty, "test": empty})  # fmt: skip
    (dst / "index.json").write_text(json.dumps(new))
    return n


PROBE = r"""
import json, resource, sys, time, torch
from torch.utils.data import DataLoader
from geodiff.data.cache import CachedMoleculeDataset
from geodiff.data.molecules import collate_molecules
ds = CachedMoleculeDataset(sys.argv[1], "train")
workers, batches = int(sys.argv[2]), int(sys.argv[3])
loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, collate_fn=collate_molecules,
                    generator=torch.Generator().manual_seed(0))
t0, n = time.perf_counter(), 0
for i, b in enumerate(loader):
    n += b.num_graphs
    if i + 1 == batches:
        break
sec = time.perf_counter() - t0
print(json.dumps({"conformers": n, "seconds": sec, "rate": n / sec,
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def probe(cache: Path, workers: int, batches: int) -> dict:
    cmd = [sys.executable, "-c", PROBE, str(cache), str(workers), str(batches)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(r.stdout.strip().splitlines()[-1])


def training_rate(cache: Path, steps: int = 8) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from geodiff.config import build
    from geodiff.data.cache import CachedMoleculeDataset
    from geodiff.data.molecules import collate_molecules
    from geodiff.models.eqgat_diff import EQGATDiffDenoiser
    from geodiff.training.molecules import eqgat_diff_loss, with_data

    ds = CachedMoleculeDataset(cache, "train")
    sch = with_data(build("scheduler", "eqgat_diff"), ds.statistics())
    torch.manual_seed(0)
    model = EQGATDiffDenoiser(num_atom_types=len(ds.vocab.atoms), s_dim=128, v_dim=32, e_dim=16, num_layers=6,
                              self_condition=True)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate_molecules,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    batches = list(itertools.islice(loader, steps + 2))
    times = []
    for k, b in enumerate(batches):
        t0 = time.perf_counter()
        opt.zero_grad()
        eqgat_diff_loss(model, b, sch, generator=torch.Generator().manual_seed(k))["loss"].backward()
        opt.step()
        if k >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return {
        "steps": len(times),
        "seconds_per_step": float(np.median(times)),
        "rate": 64 / float(np.median(times)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--work", default=None, help="folder for the caches (default: a temporary one, removed)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="geodiff-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    out = {"device": device_description("cpu"), "batches_of_64": args.batches}
    try:
        n = geom_like_sdf(work / "geom_like.sdf")
        t0 = time.perf_counter()
        build_cache(
            work / "geom_like.sdf", work / "base", conformers=5, fractions=(1.0, 0.0, 0.0), progress=False
        )
        sec = time.perf_counter() - t0
        out["preprocessing"] = {"conformers": n, "seconds": sec, "rate": n / sec}
        print(f"preprocessing: {n} conformers in {sec:.1f} s ({n / sec:.0f} conformers/s, SDF -> cache)")
        out["sizes"] = {}
        for size in args.sizes:
            dst = work / f"x{size}"
            t0 = time.perf_counter()
            count = replicate(work / "base", dst, size)
            disk = sum(f.stat().st_size for f in dst.rglob("*.npy")) / 2**20
            r = probe(dst, 2, args.batches)
            r.update(conformers_in_cache=count, replicate_seconds=time.perf_counter() - t0, disk_mb=disk)
            out["sizes"][str(size)] = r
            print(f"{count:>9} conformers ({disk:7.0f} MB on disk): "
                  f"peak RSS main {r['rss_main_mb']:6.0f} MB, "
                  f"largest worker {r['rss_children_mb']:6.0f} MB; "
                  f"loader {r['rate']:7.0f} conformers/s (2 workers)")  # fmt: skip
            if size != args.sizes[-1]:
                shutil.rmtree(dst)
        big = work / f"x{args.sizes[-1]}"
        out["loader_0_workers"] = probe(big, 0, args.batches)
        out["training"] = training_rate(big)
        lr0, lr2, tr = (
            out["loader_0_workers"]["rate"],
            out["sizes"][str(args.sizes[-1])]["rate"],
            out["training"]["rate"],
        )
        out["loader_over_training"] = {"0_workers": lr0 / tr, "2_workers": lr2 / tr}
        print(f"loader on {args.sizes[-1]} conformers: {lr0:.0f} conformers/s with 0 workers, "
              f"{lr2:.0f} with 2; "
              f"training (CPU model, batch 64): {tr:.1f} conformers/s -> loader "
              f"{lr0 / tr:.0f}x / {lr2 / tr:.0f}x")  # fmt: skip
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["peak_rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(f"JSON {write_json(args.json, out)}")


if __name__ == "__main__":
    main()
