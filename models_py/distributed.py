"""Data-parallel training over several processes, as launched by ``torchrun``
(``make train NPROC=2``): DistributedDataParallel over gloo on CPU, nccl on GPU.

Each process holds the whole (in-memory) training split and takes every
``world``-th row of each global batch, so a step sees the same rows as one
process would and DDP's gradient averaging makes it the same update. Rank 0
alone evaluates, writes checkpoints and reports; it tells the others when to
stop. NCCL cannot reduce sparse gradients, so on GPU the embedding table uses
dense gradients (``Dist.sparse_embeddings``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    backend: str | None = None
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sparse_embeddings(self) -> bool:
        return self.backend != "nccl"


def uses_cuda(device: str) -> bool:
    """The device rule, in one place: ``cuda``, or ``auto`` where CUDA is available."""
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def init_from_env(device: str) -> Dist:
    """Join the process group torchrun describes in the environment (none: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    use_cuda = uses_cuda(device)
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), backend, local_rank)


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast(d: Dist, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not d.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
