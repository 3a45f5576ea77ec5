"""Process-group set-up for ``torchrun``: one process per device, gloo on CPU, NCCL on CUDA.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single
process. Only the primary process (rank 0) writes files. Batch norm keeps per-process statistics
(plain ``BatchNorm3d``, no ``SyncBatchNorm``); DDP broadcasts rank 0's running statistics at each
forward, so every checkpoint holds rank 0's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedContext", "init_distributed", "shutdown_distributed", "all_reduce_sums", "barrier",
           "unwrap_model", "default_device"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: its rank, the number of processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: str | torch.device | None = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment, or describe a single process.

    Args:
        device: ``cpu``, ``cuda`` (each process takes ``cuda:LOCAL_RANK``) or None for the default.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=30))
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sums(values: list[float], ctx: DistributedContext) -> list[float]:
    """Sum each value over all processes (float64, so counts stay exact)."""
    if not ctx.enabled:
        return values
    device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` and ``DistributedDataParallel`` wrappers (what checkpoints hold)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
