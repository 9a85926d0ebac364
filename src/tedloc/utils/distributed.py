"""The processes of one job: ``torchrun --nproc_per_node N -m tedloc ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :meth:`Distributed.from_env` joins them into a process group (NCCL
on CUDA, gloo on the CPU). A single process is a world of size 1: every method here is then a no-op, so
the same code serves both. The context is part of the runtime (:class:`tedloc.utils.device.Runtime`).
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from tedloc.errors import TedlocError

__all__ = ["Distributed"]


@dataclass(frozen=True)
class Distributed:
    """The job's processes as this one sees them (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is the first process (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether the job has more than one process."""
        return self.world_size > 1

    @staticmethod
    def env_world_size() -> int:
        """The number of processes torchrun started for this job (``WORLD_SIZE``; 1 outside torchrun)."""
        return int(os.environ.get("WORLD_SIZE", "1"))

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float = 1800.0) -> tuple["Distributed", torch.device]:
        """Join the job described by torchrun's variables (or run alone); returns the context and the
        device, which on CUDA becomes ``cuda:LOCAL_RANK``. Called once, by
        :meth:`tedloc.utils.device.Runtime.create`."""
        world = cls.env_world_size()
        if world <= 1:
            return cls(), device
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if local >= count:
                raise TedlocError(f"torchrun started process {local} of this node but it has {count} GPU(s): "
                                  f"use --nproc_per_node {count} or fewer")
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if not dist.is_initialized():
            options = {"timeout": datetime.timedelta(seconds=timeout_s)}
            if device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
                options["device_id"] = device  # NCCL binds this process's GPU at once
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **options)
        return cls(rank, world, local), device

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the first process (None on the others), which all wait for it. If it fails there,
        it raises there and the other processes exit quietly (status 2) instead of waiting forever."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except BaseException as e:  # the others must learn of it before any collective
                error = e
        if self.broadcast_object(error is not None):
            if error is not None:
                raise error
            raise SystemExit(2)
        return result

    def barrier(self) -> None:
        """Wait until every process gets here (nothing to wait for with one process)."""
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (in place; the tensor itself with one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Destroy the process group, if this job has one."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
