"""This process's place under `torchrun` (rank 0 of 1 otherwise) and the few collectives radbench needs: barriers,
rank-0-first sections, gathering extracted rows, averaging gradients and numbers. CUDA ranks use NCCL (one GPU
each, LOCAL_RANK); CPU ranks and every object collective use gloo."""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from radbench.device import resolve_device


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    _objects: object = None  # gloo group for Python objects when the default group is NCCL

    @classmethod
    def from_env(cls, device_name: str = "auto") -> "Ranks":
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name)
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        ranks = cls(rank, world, local, device)
        if world > 1:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            ranks._objects = dist.new_group(backend="gloo") if device.type == "cuda" else None
        return ranks

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier(group=self._objects)

    @contextlib.contextmanager
    def rank_zero_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. builds a cache), then the others (finding it built)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def share(self, rows: int, batch_size: int) -> range:
        """This rank's rows: a contiguous run of whole batches, so every batch is the one a single process would
        form (features then equal a single process's bit for bit; no sampler padding, no row twice)."""
        batches = -(-rows // batch_size)
        low, high = self.rank * batches // self.world, (self.rank + 1) * batches // self.world
        return range(min(low * batch_size, rows), min(high * batch_size, rows))

    def gather_rows(self, array: np.ndarray) -> np.ndarray | None:
        """Every rank's rows, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return array
        parts = [None] * self.world if self.main else None
        torch.distributed.gather_object(array, parts, dst=0, group=self._objects)
        return np.concatenate(parts) if self.main else None

    def mean(self, value: float) -> float:
        """A number averaged over the ranks."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor) / self.world

    def total(self, value: float) -> float:
        """A number summed over the ranks."""
        return self.mean(value) * self.world

    def average_gradients(self, parameters: list[torch.nn.Parameter], average: bool = True) -> None:
        """One all-reduce of all gradients, flattened (what DDP's buckets do, without its forward hooks); summed
        instead of averaged when each rank already weighted its loss by its share of the batch."""
        if self.world == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        torch.distributed.all_reduce(flat)
        if average:
            flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


_TRAINING: contextvars.ContextVar[Ranks | None] = contextvars.ContextVar("radbench_training_ranks", default=None)


@contextlib.contextmanager
def training_together(ranks: Ranks) -> Iterator[None]:
    """Within this block the training loop splits every batch over `ranks` (a job every rank runs together)."""
    token = _TRAINING.set(ranks if ranks.world > 1 else None)
    try:
        yield
    finally:
        _TRAINING.reset(token)


def training_ranks() -> Ranks | None:
    return _TRAINING.get()

