"""Distributed training on ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node N -m talkinghead.cli train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address; :func:`init_distributed` reads them and joins the
process group (NCCL on GPUs, gloo on CPUs). Without them training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from talkinghead.errors import InvalidInputError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process initialised the group, so it tears it down

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and plots."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(device=dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    return DistContext(rank, world, local, dev, owns)


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel over ``module`` when distributed, else ``module`` itself.

    Unused parameters are expected: D's step leaves E and G without gradients.
    """
    if not ctx.distributed:
        return module
    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average scalar logs over ranks, so rank 0 logs the global batch, not its shard."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def parameter_spread(model: nn.Module, ctx: DistContext) -> float:
    """Largest difference, over ranks, of any parameter tensor's sum (0.0 when in sync)."""
    if not ctx.distributed:
        return 0.0
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(ctx.device)
    gathered = [torch.empty_like(sums) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, sums)
    stacked = torch.stack(gathered)
    return float((stacked.max(0).values - stacked.min(0).values).max())


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Videos of one rank: every ``world_size``-th from ``rank`` (disjoint, covering)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InvalidInputError(f"rank {rank} is not in a world of {world_size}")
    if n < world_size:
        raise InvalidInputError(f"{n} videos cannot be shared among {world_size} ranks")
    return list(range(rank, n, world_size))
