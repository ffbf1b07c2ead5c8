"""Training one model on several processes started by ``torchrun`` (data parallel).

    torchrun --nproc_per_node=4 -m stoneseg_core train DATA --out MODEL [options]

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in every process it starts;
``init_from_env`` joins them into one process group (NCCL on CUDA, Gloo on the CPU) and
``current`` tells the training steps which rank they are. Without torchrun (or with one
process) nothing here is used and training is exactly what it is alone.

What each rank does (``training_steps`` and ``train``): every rank trains on its own share
of the crops (``DistributedSampler``, reshuffled each epoch with ``set_epoch``) with its own
augmentation seed, through a ``DistributedDataParallel`` wrapper that averages the gradients;
``--batch-size`` is per rank (the global batch is N x it) and the learning rate is not
scaled. Every rank recalibrates BatchNorm (SyncBatchNorm on CUDA, so the statistics are those
of all ranks); rank 0 alone validates the unwrapped model, decides whether the epoch is the
best, saves, and yields the progress events; its decision is broadcast. A stop asked on any
rank (``should_stop``) is all-reduced after every batch, so all ranks stop at the same batch.

A rank that dies is noticed by torchrun, which ends the others; a rank that hangs makes the
others fail after the process group's timeout (``STONESEG_DIST_TIMEOUT`` seconds, default
1800: long enough for rank 0 to validate while the others wait). The model on disk is the
best one saved so far either way (saves are atomic).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job."""

    rank: int
    local_rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, kind: str) -> torch.device:
        """``cuda:LOCAL_RANK`` on CUDA (one GPU per process), else the CPU."""
        return torch.device("cuda", self.local_rank) if kind == "cuda" else torch.device("cpu")

    def _tensor(self, values: list[float]) -> torch.Tensor:
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else "cpu"
        return torch.tensor(values, dtype=torch.float64, device=device)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        t = self._tensor([value])
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def total(self, value: int) -> int:
        t = self._tensor([float(value)])
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        t = self._tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def from_main(self, obj):
        """Rank 0's ``obj`` on every rank (a small picklable value)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched_by_torchrun() -> bool:
    """True in a process of a torchrun job with more than one process."""
    return env_world_size() > 1 and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def _timeout() -> timedelta:
    try:
        seconds = float(os.environ.get("STONESEG_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        seconds = DEFAULT_TIMEOUT_S
    return timedelta(seconds=max(1.0, seconds))


def init_from_env(device: str = "auto") -> Distributed | None:
    """Join the torchrun job this process belongs to; None when there is none (one process).

    ``device`` is the training's ``--device``: NCCL and ``cuda:LOCAL_RANK`` when it leads
    to CUDA, Gloo and the CPU otherwise."""
    if not launched_by_torchrun():
        return None
    if dist.is_initialized():
        return current()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=_timeout())
    log.debug(
        "rank %d of %d (local %d) joined the %s process group",
        rank,
        env_world_size(),
        local_rank,
        backend,
    )
    return current()


def current() -> Distributed | None:
    """This process's place when a process group of more than one process is running."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Distributed(
        rank=dist.get_rank(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        world_size=dist.get_world_size(),
        backend=dist.get_backend(),
    )


def shutdown() -> None:
    """Leave the process group (after the last collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_for_training(model: torch.nn.Module, run_dist: Distributed, device: torch.device):
    """``model`` in DistributedDataParallel, for the training step only (the unwrapped model
    is validated and saved). Its BatchNorm layers become SyncBatchNorm on CUDA first, in place
    of the originals; returns ``(model, wrapped)``."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = DistributedDataParallel(
            model, device_ids=[device.index], output_device=device.index
        )
    else:
        wrapped = DistributedDataParallel(model)
    return model, wrapped
