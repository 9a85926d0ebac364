"""What every training run folder shares: its resolved configuration, the LR schedule, metrics.csv."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text

__all__ = ["claim_run_folder", "set_step_lr", "write_history", "tensorboard_writer_factory"]


def claim_run_folder(out: Path, resolved: dict) -> None:
    """Write ``out/config.json``; refuse a folder holding a run of another configuration or classes."""
    path = out / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        current = json.loads(json.dumps(resolved))  # tuples compare as the JSON lists they are stored as
        if previous.get("config") != current["config"] or previous.get("class_names") != current["class_names"]:
            raise TedlocError(f"{out} holds a run with another configuration; choose another --out")
    atomic_write_text(path, json.dumps(resolved, indent=1) + "\n")


def set_step_lr(optimizer: torch.optim.Optimizer, lr: float, gamma: float, step: int, epoch: int) -> float:
    """The learning rate of ``epoch`` (``lr * gamma ** (epoch // step)``), set on every group."""
    value = lr * gamma ** (epoch // step)
    for group in optimizer.param_groups:
        group["lr"] = value
    return value


def tensorboard_writer_factory():
    """``SummaryWriter`` when TensorBoard is installed, else None (logging to it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def write_history(out: Path, history: list[dict], tensorboard: bool = True) -> None:
    """``out/metrics.csv``, one row per epoch, rewritten atomically; the last row also goes to
    TensorBoard (``out/tensorboard``) when it is installed."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[-1]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    factory = tensorboard_writer_factory() if tensorboard else None
    if factory is not None:
        row = history[-1]
        with factory(log_dir=str(out / "tensorboard")) as tb:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    tb.add_scalar(key.replace("@", "_at_"), value, global_step=int(row["epoch"]))
