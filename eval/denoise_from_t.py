"""One-step recovery: noise real molecules to a timestep t, denoise once, score the predicted clean molecule.

    .venv/bin/python eval/denoise_from_t.py --ckpt checkpoints/qm9_eqgat_small outputs/run/export \
        --data ../shared/data/qm9/test.npz --n 400 --t 0 25 50 100 150 200 300 \
        --json eval/results/qm9_eqgat_small_denoise_from_t.json --plot denoise_from_t.png

The molecules are the first ``--n`` of the training run's validation split (give the run's data path,
split fraction and seed, and ``--aromatic`` for a run with data.kekulize=false). For each t, every molecule is
forward-noised (positions, atom types, charges, bonds) with the checkpoint's schedulers and the model's
x0 prediction is taken by argmax. Reported per t: molecule / atom stability and RDKit validity of the
prediction, the fraction of molecules whose atom types / bond graph are recovered exactly, and the
position RMSE (Angstrom, both centred). The first row scores the data itself: a model cannot be more
stable than the molecules it was trained on, so that row is the ceiling. A model whose one-step recovery
is near the ceiling at small t but whose samples are far below it loses its molecules at high noise.
Several checkpoints (of the same data and vocabulary) are compared on the same molecules and noise.
"""

from __future__ import annotations

import sys
import time

import torch
from molecule_runs import fail, load_runs, run_parser
from tqdm import tqdm

from geodiff.data.molecules import collate_molecules
from geodiff.io import device_description, save_figure, write_json
from geodiff.metrics.chemistry import molecule_metrics, most_unstable
from geodiff.pipelines.molecules import records_from_graph
from geodiff.training.molecules import noisy_molecules


def _scores(records, refs, vocab) -> dict:
    """Stability and validity of ``records``, and how many of them give back their ``refs`` exactly."""
    m = molecule_metrics(records, vocab)
    atoms_ok = bonds_ok = 0
    sq, count = 0.0, 0
    for pred, ref in zip(records, refs, strict=True):
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


def _denoise(pipe, refs, t: int, batch_size: int, device: str, seed: int) -> list:
    """The argmax x0 prediction for every molecule of ``refs`` noised to timestep ``t``."""
    model = pipe.model  # on ``device`` already, in eval mode
    dtype = next(model.parameters()).dtype
    T = pipe.schedulers.num_train_timesteps
    g = torch.Generator(device=device).manual_seed(seed + t)  # the same noise for every checkpoint
    preds = []
    for lo in range(0, len(refs), batch_size):
        batch = collate_molecules(refs[lo : lo + batch_size]).to(device)
        batch.pos = batch.pos.to(dtype)
        tt = torch.full((batch.num_graphs,), t, dtype=torch.long, device=device)
        noisy = noisy_molecules(batch, pipe.schedulers, tt, g)
        with torch.no_grad():
            out = model(noisy["pos"], noisy["atoms"], noisy["charges"], noisy["bonds"],
                        (tt.to(dtype) + 1) / T, batch.batch, batch.edge_index)  # fmt: skip
        preds += records_from_graph(out["pos"], out["atoms"], out["charges"], out["bonds"], batch.edge_index,
                                    batch.num_atoms, prefix=f"t{t}")  # fmt: skip
    return preds


def _print_rows(rows: dict) -> None:
    heads = ("mol stab", "atom stab", "valid", "atoms ok", "bonds ok", "RMSE/A")
    print(f"{'':>7} " + " ".join(f"{h:>9}" for h in heads))
    for name, r in rows.items():
        keys = ("mol_stability", "atom_stability", "validity", "atoms_recovered", "bonds_recovered")
        cells = [f"{100 * r[k]:8.1f}%" for k in keys] + [f"{r['pos_rmse']:9.3f}"]
        print(f"{name:>7} " + " ".join(cells) + f"   {most_unstable(r['unstable_atoms'], k=3)}")


def _plot(data_row: dict, results: dict, path: str, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("mol_stability", "molecule stability (%)"), ("bonds_recovered", "bond graph recovered (%)"),
              ("pos_rmse", "position RMSE (Angstrom)"))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13.2, 3.6))
    for ax, (key, label) in zip(axes, panels, strict=True):
        scale = 1.0 if key == "pos_rmse" else 100.0
        for name, rows in results.items():
            ts = [int(k[2:]) for k in rows]
            ax.plot(ts, [scale * r[key] for r in rows.values()], "o-", ms=4, label=name)
        if key == "mol_stability":
            ax.axhline(scale * data_row[key], ls="--", c="grey", lw=1, label="the data (ceiling)")
        ax.set_xlabel("timestep t of the forward noise")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"one-step x0 prediction from noise level t ({n} validation molecules)", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    ap = run_parser(__doc__, [0, 25, 50, 100, 150, 200, 300])
    ap.add_argument("--n", type=int, default=400, help="validation molecules to use")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="seed of the forward noise")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--plot", default=None, help="write a PNG of stability, bonds and RMSE against t here")
    args = ap.parse_args()
    if args.n < 1 or args.batch_size < 1:
        fail("denoise_from_t", "--n and --batch-size must be >= 1")
    pipes, dm, ds = load_runs(args, "denoise_from_t")
    refs = [ds[i] for i in dm.val_idx[: args.n]]
    data_row = _scores(refs, refs, ds.vocab)
    results = {}
    t0 = time.time()
    for name, pipe in pipes.items():
        steps = tqdm(args.t, desc=f"{name}: timesteps", unit="t")
        rows = {f"t={t}": _scores(_denoise(pipe, refs, t, args.batch_size, args.device, args.seed), refs,
                                  pipe.vocab) for t in steps}  # fmt: skip
        results[name] = rows
    seconds = time.time() - t0
    where = device_description(args.device)
    print(f"{len(refs)} validation molecules of {args.data}, {seconds:.0f} s ({where})")
    for name, rows in results.items():
        print(f"\n{name} (T = {pipes[name].schedulers.num_train_timesteps})")
        _print_rows({"data": data_row, **rows})
    if args.json:
        result = {"command": " ".join(sys.argv), "data": args.data, "num_molecules": len(refs),
                  "seed": args.seed, "seconds": seconds, "device": device_description(args.device),
                  "torch": torch.__version__, "data_row": data_row, "checkpoints": results}  # fmt: skip
        write_json(args.json, result, indent=2)
    if args.plot:
        _plot(data_row, results, args.plot, len(refs))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
