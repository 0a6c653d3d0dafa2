"""Add ``training_smiles.npz`` (novelty against the training molecules) to a molecule export made before
exports carried it, from the training data as the model's training record describes it.

    .venv/bin/python eval/add_training_smiles.py --ckpt checkpoints/qm9_eqgat_small \
        --data ../shared/data/qm9/test.npz --seed 0 --val-fraction 0.05

The training split is rebuilt exactly as ``MoleculeDataModule`` builds it (same file, bond perception,
seeded train / validation permutation), its molecules' canonical SMILES are hashed
(:class:`geodiff.metrics.novelty.SmilesSet`) and written into the export. New exports write the file
themselves (``MoleculeDiffusionModule.export_extras``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodiff.data.datamodules import MoleculeDataModule  # noqa: E402
from geodiff.metrics.novelty import TRAINING_SMILES, SmilesSet  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="the export folder to add the file to")
    ap.add_argument("--data", required=True, help="the training data (as data.path was)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    dm = MoleculeDataModule(args.data, cache_dir=None, limit=args.limit, val_fraction=args.val_fraction,
                            seed=args.seed)  # fmt: skip
    dm.prepare()
    source = f"training split of {args.data} (seed {args.seed}, val_fraction {args.val_fraction})"
    smiles = SmilesSet.from_molecules(dm.training_molecules(), source=source)
    out = smiles.save(Path(args.ckpt) / TRAINING_SMILES)
    print(f"{len(dm.train_idx)} training molecules -> {len(smiles)} distinct canonical SMILES in "
          f"{time.time() - t0:.1f} s: {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
