"""A callback for the DDP tests: writes, per process, a fingerprint of the random state at the first
training batch (``rank<r>.txt`` in ``path``), so the test can tell whether processes draw different noise."""

import hashlib
from pathlib import Path

import lightning.pytorch as L
import torch


class RandomStateProbe(L.Callback):
    def __init__(self, path: str):
        self.path = Path(path)
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.done:
            self.done = True
            digest = hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest()
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / f"rank{trainer.global_rank}.txt").write_text(f"{trainer.world_size} {digest}\n")
