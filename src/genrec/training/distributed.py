"""Data-parallel training across processes: PyTorch DDP, launched by ``torchrun``.

``genrec train ... --nproc N`` re-executes itself as (``launch``)

    python -m torch.distributed.run --standalone --nproc_per_node N -m genrec.cli train ...

and torchrun gives every worker RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
``trainer.fit`` sees WORLD_SIZE > 1 and then

- joins the process group (``init``): gloo on CPU, nccl when ``train.device`` is cuda, where
  each worker takes ``cuda:LOCAL_RANK``; a group the caller already made is used as it is;
- wraps the model's ``loss`` in DistributedDataParallel (``wrap``): gradients are averaged over
  the ranks after every backward, so the ranks' weights stay identical;
- takes batches rank, rank + N, rank + 2N, ... of each epoch's batch list (``shard``): every rank
  builds the same seeded list and keeps its own share, as torch's DistributedSampler does;
- lets rank 0 alone validate and write files; its metric is broadcast, so every rank makes the
  same early-stopping decision and keeps the same best weights.

``train.batch_size`` is per process, so one step sees N x batch_size sequences and an epoch
takes 1/N of the steps; each rank draws dropout masks and negatives from ``seed + rank``.

Example (two CPU processes on this machine; any gradient model and dataset):
    $ genrec train sasrec --data ml-1m --nproc 2 --set train.threads=1
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["rank", "world_size", "local_device", "init", "wrap", "shard", "broadcast_float",
           "mean", "any_true", "gather", "launch_command", "launch"]

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else torchrun's RANK, else 0."""
    return dist.get_rank() if _active() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    """Number of processes: from the process group, else torchrun's WORLD_SIZE, else 1."""
    return dist.get_world_size() if _active() else int(os.environ.get("WORLD_SIZE", 1))


def local_device(device: torch.device) -> torch.device:
    """cuda -> cuda:LOCAL_RANK (one GPU per worker); other devices unchanged."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", device.index or 0)))


def init(device: torch.device) -> bool:
    """Join the process group from torchrun's environment; True when this call created it."""
    if _active():
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                           "train with one process (no --nproc)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


class _Loss(nn.Module):
    """DDP synchronises gradients only for work done inside its forward: route loss() there."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``ddp(batch)`` computes ``model.loss(batch)``; its backward averages the gradients.

    Rank 0's weights and buffers are copied to every rank here. Buffers are not re-broadcast
    before each forward (``forward_sync_buffers=False``): the models' buffers (frozen content
    vectors) never change, and re-sending a large item table every step would cost more than
    the step.
    """
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(_Loss(model), device_ids=ids, forward_sync_buffers=False)


def shard(batches: Iterable[T], n: int, rank: int, world: int) -> Iterator[T]:
    """Batches ``rank, rank + world, ...`` of an epoch of ``n``, ``ceil(n / world)`` of them.

    Ranks left one short at the end re-use an epoch's first batch (DistributedSampler pads the
    same way), because every rank must take the same number of steps.
    """
    steps = -(-n // world)
    last = rank + (steps - 1) * world  # this rank's last batch, past the end when it is short
    spare = last % n if last >= n else -1  # the batch it re-uses instead
    kept, taken, seen = None, 0, 0
    for i, batch in enumerate(batches):
        seen = i + 1
        if i == spare:
            kept = batch
        if i % world == rank:
            taken += 1
            yield batch
    if seen != n:  # a rank with fewer steps than the others would hang the gradient exchange
        raise ValueError(f"the epoch yielded {seen} batches, but steps_per_epoch={n}; pass the "
                         f"exact number of batches to fit() for distributed training")
    if taken < steps:
        yield kept


def broadcast_float(value: float, src: int = 0) -> float:
    """``value`` as rank ``src`` has it, on every rank."""
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.broadcast(t, src)
    return float(t.item())


def mean(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def any_true(flag: bool) -> bool:
    t = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launch_command(nproc: int, args: list[str]) -> list[str]:
    """The torchrun command that runs ``genrec <args>`` in ``nproc`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "genrec.cli", *args]


def launch(nproc: int, args: list[str]) -> int:
    """Run ``genrec <args>`` under torchrun with ``nproc`` workers; returns the exit code."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    if world_size() > 1:
        raise RuntimeError("already inside a distributed run (WORLD_SIZE > 1): do not nest --nproc")
    return subprocess.call(launch_command(nproc, args))
