"""Data-parallel training over processes that torchrun starts (gloo: CPUs only).

Each rank takes its slice of the global batch; `gather_cat` all-gathers the embeddings with their gradients,
so the InfoNCE loss is computed over the whole global batch exactly as in one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up (gloo: CPU); (rank, world). No-op in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist_info()


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping gradients (their backward sums the ranks' gradients)."""
    if dist_info()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x), dim=0)


def barrier() -> None:
    if dist_info()[1] > 1:
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (so all ranks stop at the same step)."""
    if dist_info()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
