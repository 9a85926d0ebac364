"""Work shared by the processes of one job (``torchrun``): the order of the samples, sharding, row caches.

The processes themselves are a :class:`~tedloc.utils.distributed.Distributed` context, joined once
by :meth:`tedloc.utils.device.Runtime.create` and carried by the runtime (``runtime.dist``).

Sample order: every epoch has one global order of the whole split (a function of the seed and
the epoch only); it is cut into global batches of ``batch_size * world_size`` samples and each
rank takes its contiguous share of every global batch. N processes with batch B/N therefore see,
step by step, exactly the samples that one process with batch B sees.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from tedloc.utils.distributed import Distributed
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
