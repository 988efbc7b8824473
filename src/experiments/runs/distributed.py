"""Data-parallel runs: which process this is, and the few collective steps the stages need.

`torchrun --nproc_per_node=N -m experiments ...` and `accelerate launch -m experiments ...` both start N copies of
the entrypoint with RANK / LOCAL_RANK / WORLD_SIZE set. Every rank trains (DDP through the HF Trainer) and
generates for its shard of the test split; rank 0 alone writes files, talks to MLflow and scores. Without those
variables everything here is a no-op, so single-process code paths stay as they were.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a data-parallel job (rank 0 of 1 when not launched by torchrun/accelerate)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def dist_context() -> DistContext:
    """This process's rank, local rank and world size, from the launcher's environment variables."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistContext(rank=rank, local_rank=local, world_size=world)


def init_distributed(ctx: DistContext) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPUs) once; no-op for a single process."""
    if not ctx.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(ctx.local_rank)
    # backend=None: NCCL for CUDA tensors and gloo for CPU ones (object collectives, CPU-only runs).
    dist.init_process_group(backend=None, timeout=datetime.timedelta(minutes=60))


def adopt_slurm_tasks() -> None:
    """Inside a SLURM job of several tasks started by Hydra's submitit launcher (tasks_per_node = GPUs), set
    RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from SLURM's variables, as torchrun would."""
    if "RANK" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return
    if _env_int("SLURM_NTASKS", 1) < 2:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # LOCAL_RANK picks the GPU


def shutdown_distributed(clean: bool = True) -> None:
    """Leave the process group. After a clean run every rank first waits for the others, so none tears down its
    communication threads while a peer still talks to it (gloo aborts the process if that happens at exit)."""
    if not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()


def broadcast_from_main(ctx: DistContext, value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(ctx: DistContext, value: T) -> list[T]:
    """Every rank's `value`, in rank order, on rank 0 (an empty list elsewhere)."""
    if not ctx.distributed:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered if ctx.is_main else []


def run_on_main(ctx: DistContext, work: Callable[[], T]) -> T | None:
    """Run `work` on rank 0 only and return its result there (None elsewhere). The other ranks wait for it and,
    if it failed, fail too with rank 0's error instead of hanging at the next collective step."""
    if not ctx.distributed:
        return work()
    try:
        result = work() if ctx.is_main else None
        error = None
    except Exception as exc:
        result, error = None, f"{type(exc).__name__}: {exc}"
        broadcast_from_main(ctx, error)
        raise
    error = broadcast_from_main(ctx, error)
    if error is not None:
        raise RuntimeError(f"rank {ctx.rank}: rank 0 failed: {error}")
    return result


def shard(items: list[T], ctx: DistContext) -> list[T]:
    """This rank's share of `items` (every world_size-th, from its rank)."""
    return items[ctx.rank::ctx.world_size]


def unshard(shards: list[list[T]]) -> list[T]:
    """Inverse of `shard`: the per-rank lists (in rank order) interleaved back into the original order."""
    total = sum(len(s) for s in shards)
    world = len(shards)
    for rank, part in enumerate(shards):
        expected = len(range(rank, total, world))
        if len(part) != expected:
            raise ValueError(f"rank {rank} returned {len(part)} items where its shard of {total} holds {expected}")
    return [shards[i % world][i // world] for i in range(total)]
