"""Processes of one job (``torchrun``): ranks, collectives, the order of the samples, and sharding.

``torchrun --nproc_per_node N -m tedloc train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :meth:`Distributed.from_env` joins them into a process
group (NCCL on CUDA, gloo on the CPU). A single process is a world of size 1: every method here
is then a no-op, so the same code serves both.

Sample order: every epoch has one global order of the whole split (a function of the seed and
the epoch only); it is cut into global batches of ``batch_size * world_size`` samples and each
rank takes its contiguous share of every global batch. N processes with batch B/N therefore see,
step by step, exactly the samples that one process with batch B sees.
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from tedloc.errors import TedlocError
from tedloc.utils.device import Runtime
from tedloc.utils.progress import progress

__all__ = ["Distributed", "epoch_order", "rank_batches", "shard_indices", "step_chunks", "fill_rows"]


def epoch_order(n: int, seed: int, epoch: int, legacy_workers: bool = False) -> list[int]:
    """The global order of ``n`` samples in ``epoch``.

    It is the permutation that tedloc's training loops have always used (so that runs made before
    the engine reproduce bit for bit): ``torch.randperm(n)`` from a CPU generator seeded
    ``seed * 100003 + epoch``, after the draws a ``DataLoader`` made before it: one 64-bit draw per
    iterator and, when the loader had worker processes (``legacy_workers``), a first permutation
    that its pre-fetching consumed.
    """
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    if legacy_workers:
        torch.randperm(n, generator=generator)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(n, generator=generator).tolist()


def rank_batches(order: list[int], batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This rank's batches: its contiguous share of each global batch of ``batch_size * world_size``.

    A last global batch with fewer samples than ranks is dropped (with one process, never).
    """
    step = batch_size * world_size
    batches = []
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        if len(chunk) < world_size:
            break
        share = np.array_split(np.asarray(chunk, dtype=np.int64), world_size)[rank]
        batches.append(share.tolist())
    return batches


def step_chunks(rows: Sequence[int], chunk: int, rank: int = 0, world_size: int = 1) -> tuple[list[list[int]], int]:
    """Rows to fill in steps: this rank's chunks (the ``rank``-th of every ``world_size`` consecutive
    chunks) and the number of steps every rank takes (its chunks come first; then it only waits)."""
    chunks = [list(rows[k:k + chunk]) for k in range(0, len(rows), chunk)]
    return chunks[rank::world_size], -(-len(chunks) // world_size)


def shard_indices(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The images of ``range(n)`` that ``rank`` evaluates: whole batches of the one-process batching (batch b
    goes to rank b mod world_size), so that every image meets the network in the same batch as with one
    process (kernels chosen by shape, reduced-precision sums: the same maps to the last bit)."""
    starts = range(rank * batch_size, n, world_size * batch_size)
    return [i for start in starts for i in range(start, min(start + batch_size, n))]


@dataclass
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

    @classmethod
    def from_env(cls, runtime: Runtime, timeout_s: float = 1800.0) -> tuple["Distributed", Runtime]:
        """Join the job described by torchrun's variables (or run alone); returns the context and the
        runtime, whose CUDA device becomes ``cuda:LOCAL_RANK``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(), runtime
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if runtime.is_cuda:
            count = torch.cuda.device_count()
            if local >= count:
                raise TedlocError(f"torchrun started process {local} of this node but it has {count} GPU(s): "
                                  f"use --nproc_per_node {count} or fewer")
            torch.cuda.set_device(local)
            runtime = Runtime(torch.device("cuda", local), runtime.precision)
        if not dist.is_initialized():
            options = {"timeout": datetime.timedelta(seconds=timeout_s)}
            if runtime.is_cuda and "device_id" in inspect.signature(dist.init_process_group).parameters:
                options["device_id"] = runtime.device  # NCCL binds this process's GPU at once
            dist.init_process_group("nccl" if runtime.is_cuda else "gloo", **options)
        return cls(rank, world, local), runtime

    @classmethod
    def current(cls) -> "Distributed":
        """The context of the process group this process already joined (a world of one if none)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return cls()

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


def fill_rows(cache, batches, steps: int, write: Callable[[dict], list[int]], dist: Distributed,
              desc: str = "") -> None:
    """Fill a row cache (:class:`~tedloc.utils.row_files.RowCache`) from several processes: each writes
    the rows of its ``batches`` (``write(batch)`` stores them and returns their indices); after every
    step the first process marks every process's rows done, so an interrupted fill resumes where it
    stopped; at the end the helper processes read the flags again. One process: ``write`` only (it
    marks its rows itself)."""
    iterator = iter(batches)
    for _ in progress(range(steps), desc=desc, unit="batch", enabled=dist.is_main):
        batch = next(iterator, None)
        rows = write(batch) if batch is not None else []
        if dist.enabled:
            done = [r for part in dist.gather_objects(rows) for r in part]
            if dist.is_main and done:
                cache.mark(done)
    dist.barrier()
    if cache.shared:
        cache.reload_flags()
