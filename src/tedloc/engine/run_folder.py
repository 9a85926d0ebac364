"""What every training run folder shares: its resolved configuration, the LR schedule, metrics.csv."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text

__all__ = ["claim_run_folder", "set_step_lr", "write_history"]


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


def write_history(out: Path, history: list[dict]) -> None:
    """``out/metrics.csv``, one row per epoch, rewritten atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[-1]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())
