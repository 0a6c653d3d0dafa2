"""What the molecule diagnostics in eval/ share: the arguments naming checkpoints and their training run's
data split, and loading them with one-line errors (exit 2)."""

from __future__ import annotations

import argparse
import sys

import torch

from geodiff.config import resolve_path
from geodiff.data.datamodules import MoleculeDataModule
from geodiff.errors import GeodiffError, first_line
from geodiff.pipelines.molecules import MoleculeDiffusionPipeline


def fail(prog: str, message: str) -> None:
    """Print ``prog: error: message`` to stderr and exit 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_parser(doc: str, default_t: list[int]) -> argparse.ArgumentParser:
    """A parser with the checkpoint, data-split, timestep and device arguments; help text from ``doc``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc.split("\n\n", 2)[2])  # fmt: skip
    ap.add_argument("--ckpt", nargs="+", default=["checkpoints/qm9_eqgat_small"],
                    help="one or more exported model folders")  # fmt: skip
    ap.add_argument("--data", default="../shared/data/qm9/test.npz",
                    help="the training data (QM9 npz / xyz, SDF): data.path of the training run")  # fmt: skip
    ap.add_argument("--val-fraction", type=float, default=0.05, help="data.val_fraction of the training run")
    ap.add_argument("--limit", type=int, default=None, help="data.limit of the training run")
    ap.add_argument("--split-seed", type=int, default=0, help="data.seed of the training run")
    ap.add_argument("--aromatic", action="store_true", help="keep aromatic bonds (data.kekulize=false)")
    ap.add_argument("--t", type=int, nargs="+", default=default_t,
                    help="timesteps, 0 .. T-1 (0: the least noise)")  # fmt: skip
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap


def load_runs(args, prog: str):
    """The pipelines of ``args.ckpt`` (on ``args.device``, in eval mode), the data module of their training
    run and its dataset; exits 2 on a missing file, a timestep outside 0..T-1 or another element list."""
    try:
        pipes = {c: MoleculeDiffusionPipeline.from_pretrained(c) for c in args.ckpt}
        dm = MoleculeDataModule(str(resolve_path(args.data)), cache_dir=".cache/geodiff", limit=args.limit,
                                val_fraction=args.val_fraction, seed=args.split_seed,
                                kekulize=not args.aromatic)  # fmt: skip
        ds = dm.prepare()
    except GeodiffError as exc:
        fail(prog, first_line(exc))
    for name, pipe in pipes.items():
        T = pipe.schedulers.num_train_timesteps
        bad = [t for t in args.t if not 0 <= t < T]
        if bad:
            fail(prog, f"--t: timesteps must lie in 0..{T - 1} for {name}, got {bad}")
        if tuple(ds.vocab.atoms) != tuple(pipe.vocab.atoms):
            fail(prog, f"{name}: the model's elements {pipe.vocab.atoms} are not the data's {ds.vocab.atoms}")
        pipe.model.to(args.device).eval()
    return pipes, dm, ds
