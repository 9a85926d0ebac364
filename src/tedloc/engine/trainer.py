"""The training engine: one epoch loop for every method (classifier pretraining, TeD-Loc, ...).

A method describes *what* trains as a :class:`TrainingTask` (the module that trains, its data,
its optimizer, its loss terms, its validation, the row it logs); :class:`Trainer` does the rest
the same way for all: device and precision, the sample order, ``torchrun`` processes (DDP over
the trainable module only, batch norm synchronised, losses normalised by global counts),
validation, checkpoints every epoch, resume, ``metrics.csv``/TensorBoard and progress bars.

Losses are returned as :class:`LossTerm` sums with their counts; the engine divides by the count
summed over all processes. One process with batch B and N processes with batch B/N therefore
minimise the same objective on the same samples, step by step.

Checkpoints (``RUN/checkpoints/epoch_NNN``) hold the trainable module, the optimizer and the
history; a resumed run ends with the weights of an uninterrupted one (bit for bit on the CPU):
the order, the augmentations and the pseudo-label draws depend only on (seed, epoch, sample).
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tedloc.engine.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from tedloc.engine.distributed import epoch_order, rank_batches
from tedloc.engine.run_folder import RunFolder, set_step_lr
from tedloc.engine.sync_batchnorm import synchronize_batchnorm
from tedloc.errors import TedlocError
from tedloc.utils.device import Runtime
from tedloc.utils.progress import progress

__all__ = ["LossTerm", "TrainingTask", "Trainer", "Schedule"]

_logger = logging.getLogger(__name__)


@dataclass
class LossTerm:
    """A term of the objective as a sum over this process's samples and how many samples it has.

    The engine minimises ``sum(weight * total / count)``, counts summed over every process.
    ``count=None`` marks a counter (e.g. images without pseudo-labels): logged as its epoch sum,
    never optimised. Terms of weight 0 are logged only.
    """

    total: torch.Tensor
    count: torch.Tensor | int | None = 1
    weight: float = 1.0


@dataclass(frozen=True)
class Schedule:
    """What every training command shares: epochs, batch size (per process), SGD step decay, seed, loaders."""

    epochs: int
    batch_size: int
    lr: float
    lr_step: int
    lr_gamma: float
    seed: int = 0
    workers: int = 0
    legacy_order_workers: bool = False  # see epoch_order: reproduces runs made before the engine

    @classmethod
    def of(cls, config, legacy_order_workers: bool = False) -> "Schedule":
        """The schedule of a training config (its epochs, batch_size, lr, lr_step, lr_gamma, seed, workers)."""
        return cls(config.epochs, config.batch_size, config.lr, config.lr_step, config.lr_gamma, config.seed,
                   config.workers, legacy_order_workers)


class TrainingTask(Protocol):
    """What a method gives the engine. ``host_keys`` (optional): entries of a batch that stay on the CPU."""

    def trainable(self) -> nn.Module:
        """The module that trains (what DDP wraps, the optimizer updates and checkpoints hold)."""

    def train_dataset(self) -> Dataset:
        """Samples as dicts with an ``index``; ``set_epoch(epoch)`` is called before every epoch."""

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """The optimizer of ``module``'s parameters (the :meth:`trainable` module, on the device)."""
        ...

    def loss_terms(self, module: nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """The terms for one batch (on the device, under autocast); ``module`` may be DDP-wrapped."""

    def validate(self, runtime: Runtime) -> dict:
        """Validation metrics after an epoch (every process calls it; it may shard the work)."""

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns (besides epoch, lr and seconds)."""


class Trainer:
    """Runs a :class:`TrainingTask` for ``schedule.epochs`` epochs in ``out`` (resuming when asked)."""

    def __init__(self, schedule: Schedule, runtime: Runtime, find_unused_parameters: bool = False):
        self.schedule, self.runtime, self.dist = schedule, runtime, runtime.dist
        self.find_unused_parameters = find_unused_parameters

    def fit(self, task: TrainingTask, out: str | Path | RunFolder, resume: bool = True, meta: dict | None = None
            ) -> list[dict]:
        """Train into the run folder ``out``; every epoch ends with a checkpoint and a ``metrics.csv`` row.
        Returns the history."""
        run = out if isinstance(out, RunFolder) else RunFolder(out)
        sched, runtime, dist = self.schedule, self.runtime, self.dist
        module = task.trainable().to(runtime.device)
        if dist.enabled:  # before the optimizer is made: synchronised batch norms are new modules
            module = synchronize_batchnorm(module, runtime.device)
        history: list[dict] = []
        start = 0
        optimizer = task.make_optimizer(module)
        scaler = runtime.grad_scaler()
        last = run.latest_checkpoint() if resume else None
        if last is not None:
            state, tensors, saved = load_checkpoint(last)
            module.load_state_dict(state)
            restore_optimizer(optimizer, tensors, saved["optimizer"])
            if scaler is not None and "grad_scaler" in saved:
                scaler.load_state_dict(saved["grad_scaler"])
            history, start = saved["history"], saved["epoch"] + 1
            if dist.is_main:
                _logger.info("resuming %s after epoch %d", run, start)
        wrapped = self._wrap(module)
        dataset = task.train_dataset()
        if len(dataset) < dist.world_size:
            raise TedlocError(f"{len(dataset)} training images for {dist.world_size} processes: use fewer processes")
        for epoch in range(start, sched.epochs):
            lr = set_step_lr(optimizer, sched.lr, sched.lr_gamma, sched.lr_step, epoch)
            dataset.set_epoch(epoch)
            t0 = time.perf_counter()
            module.train()
            train = self._epoch(task, wrapped, optimizer, scaler, dataset, epoch)
            module.eval()  # validation never sees (nor updates) batch statistics
            val = task.validate(runtime)
            row = {"epoch": epoch + 1, "lr": lr, **task.row(train, val), "seconds": time.perf_counter() - t0}
            history.append(row)
            if dist.is_main:
                saved = {"epoch": epoch, "history": history, **(meta or {})}
                if scaler is not None:
                    saved["grad_scaler"] = scaler.state_dict()
                save_checkpoint(run.checkpoint(epoch + 1), module, saved, optimizer)
                run.write_history(history)
                _logger.info("epoch %d/%d: %s", epoch + 1, sched.epochs, _summary(row))
            dist.barrier()
        return history

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.runtime.device.index] if self.runtime.is_cuda else None
        # batch norm statistics are global already: no buffer broadcast at every forward
        names = inspect.signature(DistributedDataParallel.__init__).parameters
        buffers = {"forward_sync_buffers": False} if "forward_sync_buffers" in names else {"broadcast_buffers": False}
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=self.find_unused_parameters,
                                       **buffers)

    def _loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        sched = self.schedule
        order = epoch_order(len(dataset), sched.seed, epoch, sched.legacy_order_workers)
        batches = rank_batches(order, sched.batch_size, self.dist.rank, self.dist.world_size)
        # the loader's own generator only seeds its workers (samples are keyed): torch's global one stays untouched
        return DataLoader(dataset, batch_sampler=batches, num_workers=sched.workers,
                          generator=torch.Generator().manual_seed(sched.seed), **self.runtime.loader_options())

    def _epoch(self, task: TrainingTask, module: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, dataset: Dataset, epoch: int) -> dict[str, float]:
        """One pass over this process's batches; returns each term's epoch value (counters: their sum)."""
        runtime, dist = self.runtime, self.dist
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        loader = self._loader(dataset, epoch)
        host_keys = getattr(task, "host_keys", ())
        for batch in progress(loader, desc=f"epoch {epoch + 1}/{self.schedule.epochs}", unit="batch",
                              total=len(loader), enabled=dist.is_main):
            batch = {k: v if k in host_keys else runtime.to_device(v) for k, v in batch.items()}
            with runtime.autocast():
                terms = task.loss_terms(module, batch, epoch)
            # one host sync per step: every term's sum and count, summed over the processes
            device = runtime.device
            local = torch.stack([torch.stack([torch.as_tensor(t.total, device=device).detach().double().reshape(()),
                                              torch.as_tensor(1 if t.count is None else t.count,
                                                              device=device).double().reshape(())])
                                 for t in terms.values()])
            totals = dist.all_reduce_sum(local).cpu().tolist()
            loss = None
            for (name, term), (total, count) in zip(terms.items(), totals):
                sums[name] = sums.get(name, 0.0) + total
                counts[name] = counts.get(name, 0.0) + count
                if term.count is None or not term.weight:
                    continue
                # divided by the global count (times the processes: DDP averages their gradients)
                value = term.weight * (term.total.float() / (max(count, 1.0) / dist.world_size))
                loss = value if loss is None else loss + value
            optimizer.zero_grad(set_to_none=True)
            if loss is None:
                continue
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        return {name: sums[name] if terms[name].count is None else sums[name] / max(counts[name], 1.0)
                for name in sums}


def _summary(row: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                     if k != "epoch" and v is not None)
