"""One-step recovery: noise real molecules to a timestep t, denoise once, score the predicted clean molecule.

    .venv/bin/python eval/denoise_from_t.py --ckpt checkpoints/qm9_eqgat_small \
        --data ../shared/data/qm9/test.npz --n 400 --t 0 25 50 100 150 200 300 \
        --json eval/results/qm9_eqgat_small_denoise_from_t.json

The molecules are the first ``--n`` of the training run's validation split (give the run's data path,
split fraction and seed, and ``--aromatic`` for a run with data.kekulize=false). For each t, every molecule is
forward-noised (positions, atom types, charges, bonds) with the checkpoint's schedulers and the model's
x0 prediction is taken by argmax. Reported per t: molecule / atom stability and RDKit validity of the
prediction, the fraction of molecules whose atom types / bond graph are recovered exactly, and the
position RMSE (Angstrom, both centred). The first row scores the data itself: a model cannot be more
stable than the molecules it was trained on, so that row is the ceiling. A model whose one-step recovery
is near the ceiling at small t but whose samples are far below it loses its molecules at high noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from tqdm import tqdm

from geodiff.cli import resolve_path
from geodiff.data.molecules import collate_molecules
from geodiff.errors import GeodiffError
from geodiff.io import atomic_path, device_description
from geodiff.manifolds import euclidean
from geodiff.metrics.chemistry import molecule_metrics, most_unstable
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline, records_from_graph
from geodiff.training.molecule_loss import noisy_molecules
from geodiff.training.molecules import MoleculeDataModule


def _scores(records, batch_records, vocab) -> dict:
    m = molecule_metrics(records, vocab)
    atoms_ok = bonds_ok = 0
    sq, count = 0.0, 0
    for pred, ref in zip(records, batch_records, strict=True):
        atoms_ok += bool(torch.equal(pred.atom_types, ref.atom_types))
        a = {(int(i), int(j), int(b)) for (i, j), b in zip(pred.bond_index.T, pred.bond_types, strict=True)}
        r = {(int(i), int(j), int(b)) for (i, j), b in zip(ref.bond_index.T, ref.bond_types, strict=True)}
        bonds_ok += a == r
        ref_pos = ref.pos.float() - ref.pos.float().mean(0)
        sq += float((pred.pos - pred.pos.mean(0) - ref_pos).pow(2).sum())
        count += ref.num_atoms
    n = len(records)
    return {"mol_stability": m["mol_stability"], "atom_stability": m["atom_stability"],
            "validity": m["validity"], "atoms_recovered": atoms_ok / n, "bonds_recovered": bonds_ok / n,
            "pos_rmse": (sq / count) ** 0.5, "unstable_atoms": m["unstable_atoms"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    ap.add_argument("--ckpt", default="checkpoints/qm9_eqgat_small", help="an exported model folder")
    ap.add_argument("--data", default="../shared/data/qm9/test.npz",
                    help="the training data (QM9 npz / xyz, SDF): data.path of the training run")  # fmt: skip
    ap.add_argument("--val-fraction", type=float, default=0.05, help="data.val_fraction of the training run")
    ap.add_argument("--limit", type=int, default=None, help="data.limit of the training run")
    ap.add_argument("--split-seed", type=int, default=0, help="data.seed of the training run")
    ap.add_argument("--aromatic", action="store_true", help="keep aromatic bonds (data.kekulize=false)")
    ap.add_argument("--n", type=int, default=400, help="validation molecules to use")
    ap.add_argument("--t", type=int, nargs="+", default=[0, 25, 50, 100, 150, 200, 300],
                    help="timesteps, 0 .. T-1 (0: the least noise)")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="seed of the forward noise")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    try:
        pipe = MoleculeDiffusionPipeline.from_pretrained(resolve_path(args.ckpt))
        T = pipe.schedulers.num_train_timesteps
        bad = [t for t in args.t if not 0 <= t < T]
        if bad:
            raise GeodiffError(f"--t: timesteps must lie in 0..{T - 1}, got {bad}")
        if args.n < 1 or args.batch_size < 1:
            raise GeodiffError("--n and --batch-size must be >= 1")
        dm = MoleculeDataModule(str(resolve_path(args.data)), cache_dir=".cache/geodiff", limit=args.limit,
                                val_fraction=args.val_fraction, seed=args.split_seed,
                                kekulize=not args.aromatic)  # fmt: skip
        ds = dm.prepare()
    except GeodiffError as exc:
        print(f"denoise_from_t: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if tuple(ds.vocab.atoms) != tuple(pipe.vocab.atoms):
        print(f"denoise_from_t: error: the data's elements {ds.vocab.atoms} are not the model's "
              f"{pipe.vocab.atoms}", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    refs = [ds[i] for i in dm.val_idx[: args.n]]
    model = pipe.model.to(args.device).eval()
    dtype = next(model.parameters()).dtype
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    rows = {"data": _scores(refs, refs, pipe.vocab)}
    t0 = time.time()
    for t in tqdm(args.t, desc="timesteps", unit="t"):
        preds = []
        for lo in range(0, len(refs), args.batch_size):
            chunk = refs[lo : lo + args.batch_size]
            batch = collate_molecules(chunk).to(args.device)
            batch.pos = batch.pos.to(dtype)
            tt = torch.full((batch.num_graphs,), t, dtype=torch.long, device=args.device)
            noisy = noisy_molecules(batch, pipe.schedulers, tt, g)
            with torch.no_grad():
                out = model(noisy["pos"], noisy["atoms"], noisy["charges"], noisy["bonds"],
                            (tt.to(dtype) + 1) / T, batch.batch, batch.edge_index)  # fmt: skip
            pos = euclidean.remove_mean(out["pos"], batch.batch, batch.num_graphs)
            preds += records_from_graph(pos, out["atoms"], out["charges"], out["bonds"], batch.edge_index,
                                        batch.num_atoms, prefix=f"t{t}")  # fmt: skip
        rows[f"t={t}"] = _scores(preds, refs, pipe.vocab)
    seconds = time.time() - t0
    print(f"{args.ckpt}: {len(refs)} validation molecules of {args.data}, T = {T}, {seconds:.0f} s "
          f"({device_description(args.device)})")  # fmt: skip
    heads = ("mol stab", "atom stab", "valid", "atoms ok", "bonds ok", "RMSE/A")
    print(f"{'':>7} " + " ".join(f"{h:>9}" for h in heads))
    for name, r in rows.items():
        cells = [
            f"{100 * r[k]:8.1f}%"
            for k in ("mol_stability", "atom_stability", "validity", "atoms_recovered", "bonds_recovered")
        ]
        cells.append(f"{r['pos_rmse']:9.3f}")
        print(f"{name:>7} " + " ".join(cells) + f"   {most_unstable(r['unstable_atoms'], k=3)}")  # fmt: skip
    if args.json:
        result = {"command": " ".join(sys.argv), "checkpoint": args.ckpt, "data": args.data,
                  "num_molecules": len(refs), "seed": args.seed, "seconds": seconds,
                  "device": device_description(args.device), "torch": torch.__version__,
                  "rows": rows}  # fmt: skip
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
