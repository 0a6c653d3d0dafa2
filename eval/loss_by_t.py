"""The EQGAT-diff loss by component and noise level, on the validation split and on training molecules.

    .venv/bin/python eval/loss_by_t.py --ckpt outputs/qm9_s11/export checkpoints/qm9_eqgat_small \
        --data ../shared/data/qm9/test.npz \
        --json eval/results/qm9_eqgat_small_loss_by_t.json --plot loss_by_t.png

Two sets of molecules are scored: the training run's validation split (all of it unless ``--n``) and as
many molecules of its training split (give the run's data path, split fraction and seed, and ``--aromatic``
for a run with data.kekulize=false). For each timestep of ``--t`` every molecule is forward-noised to that
t (the same noise for every checkpoint) and the four unweighted terms of the training loss are reported:
the position error of the x0 prediction (squared Angstrom summed over coordinates, averaged over atoms)
and the cross-entropies of the atom types, charges and bonds. The row ``uniform`` is the weighted training
loss (with each checkpoint's loss weights from its training record, or ``--weights``) with t drawn
uniformly, averaged over ``--passes`` draws of t and noise; on the whole validation split
its first pass is the run's ``val/loss`` (the same batches and seeds). A training-split loss well
below the validation loss means the model overfits; the two equal means it underfits, and a bigger model
or longer training is the lever. Comparing checkpoints per term and t shows where a training stage
helped; with two or more checkpoints the plot's lower row shows each term's percent change against the
first checkpoint (at the t where the term is at least 0.1 % of its largest value).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch
from molecule_runs import fail, load_runs, run_parser
from tqdm import tqdm

from geodiff.data.molecules import collate_molecules
from geodiff.io import device_description, save_figure, write_json
from geodiff.training.export import read_training_record, record_stages
from geodiff.training.molecules import LossWeights, eqgat_diff_loss

TERMS = ("pos", "atoms", "charges", "bonds")
RELATIVE_FLOOR = 1e-3  # percent-change row: skip t where a term is below this fraction of its largest value
WEIGHT_ORDER = ("pos", "atoms", "bonds", "charges")  # the order of --weights (LossWeights' fields)


def _loss(model, refs, schedulers, batch_size: int, device: str, seeds, t: int | None,
          weights: LossWeights) -> dict[str, float]:  # fmt: skip
    """The loss terms over ``refs`` (molecule-weighted means), at timestep ``t`` or, with ``t=None``, at
    a uniform random t per molecule; batch ``b`` draws its noise from the seed ``seeds(b)``."""
    dtype = next(model.parameters()).dtype
    sums = dict.fromkeys(("loss", *TERMS), 0.0)
    for b, lo in enumerate(range(0, len(refs), batch_size)):
        batch = collate_molecules(refs[lo : lo + batch_size]).to(device)
        batch.pos = batch.pos.to(dtype)
        g = torch.Generator(device=device).manual_seed(seeds(b))
        tt = None if t is None else torch.full((batch.num_graphs,), t, dtype=torch.long, device=device)
        with torch.no_grad():
            out = eqgat_diff_loss(model, batch, schedulers, weights, generator=g, t=tt)
        for k in sums:
            sums[k] += float(out[k]) * batch.num_graphs
    return {k: v / len(refs) for k, v in sums.items()}


def _weights(ckpt: str, given: list[float] | None) -> LossWeights:
    """``--weights`` if given, else the loss weights of the checkpoint's last training stage (its export
    record), else the paper's (exports written before the record had them all trained with those)."""
    if given is not None:
        return LossWeights(**dict(zip(WEIGHT_ORDER, given, strict=True)))
    last = record_stages(read_training_record(ckpt) or {})[-1]
    return LossWeights(**last.get("loss_weights", {}))


def _rows(pipe, refs, args, weights: LossWeights, desc: str) -> dict:
    """Per-t rows and the uniform row of one checkpoint on one split."""
    model, device, passes = pipe.model, args.device, args.passes
    rows = {}
    for t in tqdm(args.t, desc=desc, unit="t"):
        rows[f"t={t}"] = _loss(model, refs, pipe.schedulers, args.batch_size, device,
                               lambda b, t=t: args.seed + 100003 * t + b, t, weights)  # fmt: skip
    runs = [_loss(model, refs, pipe.schedulers, args.val_batch_size, device,
                  lambda b, p=p: 1000 + b + 10000 * p, None, weights) for p in range(passes)]  # fmt: skip
    rows["uniform"] = {k: sum(r[k] for r in runs) / passes for k in runs[0]}
    return rows


def _print_rows(name: str, result: dict) -> None:
    print(f"\n{name}")
    print(f"{'':>9} " + " ".join(f"{s + ' ' + k:>14}" for k in ("loss", *TERMS) for s in ("val", "train")))
    val, train = result["val"], result["train"]
    for row in val:
        cells = [f"{r[row][k]:14.4f}" for k in ("loss", *TERMS) for r in (val, train)]
        print(f"{row:>9} " + " ".join(cells))


def _plot(results: dict, path: str, n: int) -> None:
    """Top: each term against t, per checkpoint (solid: validation, dashed: training molecules). Bottom,
    with two or more checkpoints: each later checkpoint's term relative to the first one's (percent change;
    the log-scale curves above lie almost on top of each other), left out where the first checkpoint's term
    is below RELATIVE_FLOOR of its largest value (there a tiny loss makes the percentage noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"pos": "positions (squared Angstrom)", "atoms": "atom types (cross-entropy)",
              "charges": "charges (cross-entropy)", "bonds": "bonds (cross-entropy)"}  # fmt: skip
    names = list(results)
    relative = len(names) > 1
    fig, axes = plt.subplots(2 if relative else 1, 4, figsize=(16, 7 if relative else 3.7), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def per_t(result, split, term):
        rows = {k: v for k, v in result[split].items() if k.startswith("t=")}
        return [int(k[2:]) for k in rows], [r[term] for r in rows.values()]

    for j, term in enumerate(TERMS):
        ax = axes[0, j]
        for i, name in enumerate(names):
            for split, style in (("val", "o-"), ("train", "x--")):
                ts, ys = per_t(results[name], split, term)
                ax.plot(ts, ys, style, ms=4, c=colours[i % len(colours)], label=f"{name} ({split})")
        ax.set_yscale("log")
        ax.set_title(labels[term], fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if relative:
            ax = axes[1, j]
            for i, name in enumerate(names[1:], start=1):
                for split, style in (("val", "o-"), ("train", "x--")):
                    ts, ys = per_t(results[name], split, term)
                    _, base = per_t(results[names[0]], split, term)
                    floor = RELATIVE_FLOOR * max(base)
                    change = [
                        100.0 * (y / b - 1.0) if b > floor else float("nan")
                        for y, b in zip(ys, base, strict=True)
                    ]
                    ax.plot(ts, change, style, ms=4, c=colours[i % len(colours)], label=f"{name} ({split})")
            ax.axhline(0.0, c=colours[0], lw=1)
            ax.set_xlim(axes[0, j].get_xlim())
            ax.set_ylabel(f"% change vs {names[0]}" if j == 0 else "", fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, j].set_xlabel("timestep t of the forward noise")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"loss terms by noise level ({n} validation and {n} training molecules)", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    ap = run_parser(__doc__, [0, 10, 25, 50, 100, 150, 200, 300, 400, 499])
    ap.add_argument("--n", type=int, default=None,
                    help="molecules per split (default and at most: the whole validation split)")  # fmt: skip
    ap.add_argument("--passes", type=int, default=4, help="draws of t and noise for the uniform row")
    ap.add_argument("--batch-size", type=int, default=100, help="batch size of the per-t rows")
    ap.add_argument("--val-batch-size", type=int, default=64,
                    help="data.batch_size of the training run (the batches of the uniform row)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed of the forward noise of the per-t rows")
    ap.add_argument("--weights", type=float, nargs=4, default=None,
                    metavar=("POS", "ATOMS", "BONDS", "CHARGES"),
                    help="module.weight_pos/atoms/bonds/charges for the weighted loss of the uniform row "
                         "(default: each checkpoint's own, from its training record; the paper's 3 0.4 2 1 "
                         "for an export that predates the record)")  # fmt: skip
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--plot", default=None, help="write a PNG of the four loss terms against t here")
    args = ap.parse_args()
    if min(args.n or 1, args.batch_size, args.val_batch_size, args.passes) < 1:
        fail("loss_by_t", "--n, --batch-size, --val-batch-size and --passes must be >= 1")
    if args.weights is not None and min(args.weights) < 0:
        fail("loss_by_t", f"--weights must be >= 0, got {args.weights}")
    pipes, dm, ds = load_runs(args, "loss_by_t")
    if not dm.val_idx or not dm.train_idx:
        fail("loss_by_t", f"{args.data}: the split has {len(dm.val_idx)} validation / "
             f"{len(dm.train_idx)} training molecules; both need some (--val-fraction)")  # fmt: skip
    n = min(args.n or len(dm.val_idx), len(dm.val_idx), len(dm.train_idx))
    splits = {"val": [ds[i] for i in dm.val_idx[:n]], "train": [ds[i] for i in dm.train_idx[:n]]}
    results, weights = {}, {}
    t0 = time.time()
    for name, pipe in pipes.items():
        weights[name] = _weights(name, args.weights)
        results[name] = {
            split: _rows(pipe, refs, args, weights[name], f"{name} ({split})")
            for split, refs in splits.items()
        }
    seconds = time.time() - t0
    print(f"{n} validation and {n} training molecules of {args.data}, {seconds:.0f} s "
          f"({device_description(args.device)})")  # fmt: skip
    for name, result in results.items():
        _print_rows(name, result)
    if args.json:
        result = {"command": " ".join(sys.argv), "data": args.data, "num_molecules_per_split": n,
                  "passes": args.passes, "seed": args.seed,
                  "weights": {k: dataclasses.asdict(w) for k, w in weights.items()}, "seconds": seconds,
                  "device": device_description(args.device), "torch": torch.__version__,
                  "checkpoints": results}  # fmt: skip
        write_json(args.json, result, indent=2)
    if args.plot:
        _plot(results, args.plot, n)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
