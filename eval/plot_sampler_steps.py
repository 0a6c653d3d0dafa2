"""Plot sample quality against the number of sampling steps, from result JSONs of eval/eval_molecules.py.

    .venv/bin/python eval/plot_sampler_steps.py eval/results/qm9_eqgat_small_ddim100_n1000.json \
        eval/results/qm9_eqgat_small_ddpm{250,500}_n1000.json \
        eval/results/qm9_eqgat_small_ddpm1000_n500.json --out docs/sampler_steps_qm9.png

One line per sampler (DDPM, DDIM): molecule stability and RDKit validity (%, with the binomial standard
error of each point as a bar) against the number of denoising steps, and the sampling time per molecule
that each run recorded. Prints the same numbers as a table. The files should come from one checkpoint
(their ``checkpoint`` fields are listed); a file that is not such a result is an error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from geodiff.io import save_figure

NEEDED = ("sampler", "steps", "num_molecules", "mol_stability", "validity", "seconds", "checkpoint")


def load_points(paths: list[str]) -> list[dict]:
    """The runs in ``paths`` sorted by sampler and steps; raises ValueError with a one-line reason."""
    runs = []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p}: not a readable JSON file ({exc})") from exc
        missing = [k for k in NEEDED if not isinstance(d, dict) or k not in d]
        if missing:
            raise ValueError(f"{p}: not an eval_molecules.py result (missing {', '.join(missing)})")
        d["file"] = p
        runs.append(d)
    if not runs:
        raise ValueError("no result files given")
    if len({(r["sampler"], r["steps"]) for r in runs}) < len(runs):
        raise ValueError("two files have the same sampler and number of steps")
    return sorted(runs, key=lambda r: (r["sampler"], r["steps"]))


def stderr(p: float, n: int) -> float:
    """Binomial standard error of a fraction ``p`` measured on ``n`` molecules."""
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def table(runs: list[dict]) -> str:
    lines = [f"{'sampler':<8}{'steps':>6}{'n':>6}{'mol stab. %':>14}{'validity %':>13}{'s/molecule':>12}"]
    for r in runs:
        n = r["num_molecules"]
        ms, va = r["mol_stability"], r["validity"]
        lines.append(f"{r['sampler']:<8}{r['steps']:>6}{n:>6}"
                     f"{100 * ms:>8.1f} ±{100 * stderr(ms, n):>4.1f}"
                     f"{100 * va:>7.1f} ±{100 * stderr(va, n):>4.1f}"
                     f"{r['seconds'] / n:>12.2f}")  # fmt: skip
    return "\n".join(lines)


def plot(runs: list[dict], out: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axt) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"ddpm": "tab:blue", "ddim": "tab:orange"}
    for sampler in sorted({r["sampler"] for r in runs}):
        rs = [r for r in runs if r["sampler"] == sampler]
        steps = [r["steps"] for r in rs]
        c = colours.get(sampler)
        lines = (("mol_stability", "o-", "molecule stability"), ("validity", "s--", "validity"))
        for key, style, label in lines:
            y = [100 * r[key] for r in rs]
            err = [100 * stderr(r[key], r["num_molecules"]) for r in rs]
            ax.errorbar(steps, y, yerr=err, fmt=style, color=c, capsize=3, label=f"{sampler.upper()} {label}")
        axt.plot(steps, [r["seconds"] / r["num_molecules"] for r in rs], "o-", color=c, label=sampler.upper())
    for a in (ax, axt):
        a.set_xscale("log")
        a.set_xlabel("denoising steps")
        a.grid(alpha=0.3)
    ax.set_ylabel("% of generated molecules")
    ax.legend(fontsize=8)
    axt.set_ylabel("seconds per molecule (as recorded)")
    axt.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])  # fmt: skip
    ap.add_argument("results", nargs="+", help="result JSONs written by eval/eval_molecules.py --json")
    ap.add_argument("--out", default="sampler_steps.png", help="the figure (PNG)")
    ap.add_argument("--title", default="sample quality and cost against the number of sampling steps")
    args = ap.parse_args(argv)
    try:
        runs = load_points(args.results)
    except ValueError as exc:
        print(f"plot_sampler_steps.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(runs))
    for r in runs:
        print(f"  {r['sampler']} {r['steps']}: {r['file']} ({r['checkpoint']})")
    plot(runs, args.out, args.title)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
