"""What every training run folder shares: its lock, its configuration, the LR schedule, metrics.csv."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import PathLock, folder_lock

__all__ = ["claim_run_folder", "data_fingerprint", "set_step_lr", "write_history",
           "tensorboard_writer_factory"]

# what makes a run's results: a resume that changes any of these is refused
_IDENTITY = ("config", "class_names", "kind", "data", "data_sha1", "anchors", "cams", "precision", "processes")
_RUN_LOCKS: dict[Path, PathLock] = {}


def data_fingerprint(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "val")) -> str:
    """SHA-1 of what a run learns from and is selected on: a dataset's ``dataset.yaml``,
    ``class_names.txt`` and the metadata files of ``splits``."""
    root = Path(root)
    files = [root / "dataset.yaml", root / "class_names.txt"]
    for split in splits:
        files += sorted((root / "metadata" / split).glob("*.txt"))
    digest = hashlib.sha1()
    for path in files:
        if path.is_file():
            digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _run_lock(out: Path) -> PathLock:
    """This process's lock of ``out``: one per folder, so claiming a folder again is no conflict."""
    key = Path(os.path.abspath(out))
    if key not in _RUN_LOCKS:
        _RUN_LOCKS[key] = folder_lock(out)
    return _RUN_LOCKS[key]


def claim_run_folder(out: Path, resolved: dict) -> PathLock:
    """Lock ``out``, then write ``out/config.json`` (with ``data_sha1``, the data's fingerprint).

    Refused: a folder another process is writing (``"<out> is in use by another tedloc process (pid N)"``),
    or one holding a run of another configuration, classes, data (path or content), anchors or maps
    (entries an older run did not record are not compared). The lock is held until the process ends,
    or until the returned lock is released (``with claim_run_folder(out, resolved): ...``).
    """
    lock = _run_lock(out).acquire()
    if "data" in resolved:
        resolved = {**resolved, "data_sha1": data_fingerprint(resolved["data"])}
    path = out / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        current = json.loads(json.dumps(resolved))  # tuples compare as the JSON lists they are stored as
        differ = [k for k in _IDENTITY if k in current and k in previous and previous[k] != current[k]]
        if differ or "config" not in previous:
            what = ", ".join(differ or ["config"]) + (" differs" if len(differ) < 2 else " differ")
            was = f"; it was trained on {previous['data']}" if "data" in differ else ""
            raise TedlocError(f"{out} holds a run with another configuration ({what}{was}); "
                              f"choose another --out")
    atomic_write_text(path, json.dumps(resolved, indent=1) + "\n")
    return lock


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
