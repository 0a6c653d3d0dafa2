"""Sampling on several devices: each process samples its share with its own seed, rank 0 merges.

    shard = Shard.launch(devices=4, device="cuda")       # 4 processes (Lightning Fabric, DDP); or torchrun
    pipe = MoleculeDiffusionPipeline.from_pretrained("qm9_eqgat_small").to(shard.device)
    report = sample_and_score(pipe, "mols.sdf", shard=shard, num_samples=10_000, seed=0)
    # rank 0: the merged report (SDF of all 10,000 molecules); other ranks: None

The work is cut into ``world_size`` contiguous shares in rank order (sizes differ by at most one); process
``r`` samples its share with seed ``seed + r``, so the merged output is the same for the same seed and world
size (and with one process it is exactly the single-process output). ``geodiff sample devices=N`` does this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from geodiff.errors import GeodiffValueError

__all__ = ["Shard"]


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` sampling processes, and its device."""

    rank: int = 0
    world_size: int = 1
    device: str | torch.device = "cpu"

    @classmethod
    def launch(cls, devices: int = 1, device: str = "cpu") -> Shard:
        """Start ``devices`` processes on ``device`` (``cpu``: gloo; ``cuda``: one GPU each, NCCL) with
        Lightning Fabric's DDP launcher, which runs the calling script once per process (under torchrun or
        SLURM, the processes the launcher made; CPU processes share the cores, as Lightning sets their
        threads). Returns this process's shard."""
        devices = int(devices)
        if devices < 1:
            raise GeodiffValueError(f"devices: must be a positive integer, got {devices}")
        if devices == 1:
            return cls(0, 1, device)
        from lightning.fabric import Fabric

        accelerator = "gpu" if str(device).startswith("cuda") else "cpu"
        fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp")
        fabric.launch()
        return cls(fabric.global_rank, fabric.world_size, fabric.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def range(self, n: int, what: str = "items") -> tuple[int, int]:
        """``[lo, hi)`` of this process's share of ``n`` items (contiguous, in rank order)."""
        if n < self.world_size:
            raise GeodiffValueError(f"{what}: {n} cannot be shared among {self.world_size} processes "
                                    f"(ask for at least {self.world_size})")  # fmt: skip
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    def check_seeded(self, sample_kwargs: dict) -> None:
        """Several processes need a seed to derive theirs from; a generator cannot be split."""
        if self.world_size > 1 and sample_kwargs.get("generator") is not None:
            raise GeodiffValueError("generator: sampling on several processes takes a seed, not a generator")

    def seed(self, seed: int | None) -> int | None:
        """This process's seed: ``seed + rank`` (None stays None: unseeded)."""
        return None if seed is None else int(seed) + self.rank

    def gather(self, obj) -> list | None:
        """Every process's ``obj`` in rank order, on rank 0 (None elsewhere). Objects travel on the CPU."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        parts = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, parts, dst=0)
        return parts
