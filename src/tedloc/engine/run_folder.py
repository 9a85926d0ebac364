"""A run folder, one type that owns its layout: configuration, checkpoints, the selected model, the stored
threshold, metrics, protocol caches, the lock. Nothing else knows the file names::

    RUN/config.json               the resolved configuration, classes, data, device and precision
    RUN/metrics.csv               one row per epoch (and RUN/tensorboard/ when TensorBoard is installed)
    RUN/checkpoints/epoch_NNN     every epoch: safetensors + JSON (trainable module and optimizer)
    RUN/model.{safetensors,json}  the selected model with its kind, classes, preprocessing and threshold
    RUN/protocol/epoch_NNN.json   the realistic protocol's per-checkpoint curves
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from tedloc.engine.checkpoint import save_checkpoint
from tedloc.engine.run_record import RunRecord
from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import PathLock, folder_lock

__all__ = ["RunFolder", "data_fingerprint", "set_step_lr", "tensorboard_writer_factory"]

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


def _same(old, new) -> bool:
    """Whether a recorded entry equals the new one; in a recorded configuration (a dict), options added to tedloc
    after the run was made (keys it lacks) are not compared."""
    if isinstance(old, dict) and isinstance(new, dict):
        return set(old) <= set(new) and all(_same(old[k], new[k]) for k in old)
    return old == new


def _differences(old, new, where: str) -> list[tuple[str, object, object]]:
    """``(field, recorded value, new value)`` of each entry where :func:`_same` finds them different, fields of a
    recorded dict named ``where.key`` (a key the new one lacks: :data:`_ABSENT`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in old for d in _differences(old[k], new.get(k, _ABSENT), f"{where}.{k}")]
    return [] if old == new else [(where, old, new)]


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _describe(differ: list[tuple[str, object, object]], shown: int = 4) -> str:
    """The first ``shown`` differences with both values, then the names of the others."""
    def value(v) -> str:
        text = repr(v) if v is _ABSENT else json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    parts = [f"{field}: {value(old)} in the run, {value(new)} now" for field, old, new in differ[:shown]]
    if len(differ) > shown:
        parts.append(f"and {len(differ) - shown} more: {', '.join(field for field, _, _ in differ[shown:])}")
    return "; ".join(parts)


class RunFolder:
    """The files of one run (see the module docstring); ``RunFolder(path)`` touches nothing on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunFolder) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        """The folder's name."""
        return self.path.name

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        """``config.json``: the resolved configuration (written when the run is claimed)."""
        return self.path / "config.json"

    @property
    def model_stem(self) -> Path:
        """``model``: the selected model's checkpoint stem (``.safetensors`` + ``.json``)."""
        return self.path / "model"

    @property
    def metadata_path(self) -> Path:
        """``model.json``: the selected model's metadata (kind, classes, preprocessing, threshold, ...)."""
        return self.model_stem.with_suffix(".json")

    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``: one checkpoint per epoch."""
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """``metrics.csv``: one row per epoch."""
        return self.path / "metrics.csv"

    @property
    def tensorboard_dir(self) -> Path:
        """``tensorboard/``: the epochs' scalars, when TensorBoard is installed."""
        return self.path / "tensorboard"

    def checkpoint(self, epoch: int) -> Path:
        """The stem of epoch ``epoch``'s checkpoint (1-based, as in ``metrics.csv``)."""
        return self.checkpoints_dir / f"epoch_{int(epoch):03d}"

    def protocol_cache(self, epoch: int) -> Path:
        """The realistic protocol's cache of epoch ``epoch``'s curves."""
        return self.path / "protocol" / f"epoch_{int(epoch):03d}.json"

    # ------------------------------------------------------------------ state
    def epochs(self) -> list[int]:
        """The epochs with a complete checkpoint (its JSON written), in order."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.checkpoints_dir.glob("epoch_*.json")
                      if p.with_suffix(".safetensors").is_file())

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint of the highest epoch, or None."""
        epochs = self.epochs()
        return self.checkpoint(epochs[-1]) if epochs else None

    def is_finished(self) -> bool:
        """Whether the run has written its selected model (``model.json``)."""
        return self.metadata_path.is_file()

    def metadata(self) -> dict:
        """``model.json``; a run without one is a :class:`TedlocError` (not finished)."""
        if not self.is_finished():
            raise TedlocError(f"{self.path}: no model.json (not a finished tedloc run; train it first)")
        try:
            return json.loads(self.metadata_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TedlocError(f"{self.metadata_path}: not valid JSON ({e})") from None

    def record(self) -> RunRecord:
        """``model.json`` as a :class:`~tedloc.engine.run_record.RunRecord` (a bad file: one line naming it)."""
        return RunRecord.from_dict(self.metadata(), str(self.metadata_path))

    def save_model(self, model: torch.nn.Module, record: RunRecord) -> Path:
        """Write the selected model: its weights (``model.safetensors``) and its record (``model.json``, last)."""
        return save_checkpoint(self.model_stem, model, record.to_dict())

    def store_threshold(self, threshold: float, source: dict) -> RunRecord:
        """Store the operating threshold of the map and what it was chosen on in ``model.json`` (atomically)."""
        record = self.record()
        record.threshold, record.threshold_source = float(threshold), dict(source)
        atomic_write_text(self.metadata_path, json.dumps(record.to_dict(), indent=1) + "\n")
        return record

    @property
    def threshold(self) -> float | None:
        """The map threshold stored with the selected model (None: none stored)."""
        return self.metadata().get("threshold")

    # ------------------------------------------------------------------ writing
    def _lock(self) -> PathLock:
        """This process's lock of the folder: one per folder, so claiming it again is no conflict."""
        key = Path(os.path.abspath(self.path))
        if key not in _RUN_LOCKS:
            _RUN_LOCKS[key] = folder_lock(self.path)
        return _RUN_LOCKS[key]

    def claim(self, resolved: dict) -> PathLock:
        """Lock the folder, then write ``config.json`` (with ``data_sha1``, the data's fingerprint).

        Refused: a folder another process is writing (``"<run> is in use by another tedloc process (pid N)"``),
        or one holding a run of another configuration, classes, data (path or content), anchors or maps
        (entries an older run did not record, and options added since, are not compared). The lock is held until the process ends,
        or until the returned lock is released (``with run.claim(resolved): ...``).
        """
        lock = self._lock().acquire()
        if "data" in resolved:
            resolved = {**resolved, "data_sha1": data_fingerprint(resolved["data"])}
        previous: dict = {}
        if self.config_path.exists():
            previous = json.loads(self.config_path.read_text())
            current = json.loads(json.dumps(resolved))  # tuples compare as the JSON lists they are stored as
            keys = sorted((k for k in _IDENTITY if k in current and k in previous), key=lambda k: k == "config")
            differ = [d for k in keys for d in _differences(previous[k], current[k], k)]
            if differ or "config" not in previous:
                what = _describe(differ) if differ else "it records no config"
                raise TedlocError(f"{self.path} holds a run with another configuration ({what}); choose another --out")
        # what a resume does not state again (the entries of :meth:`confirm`) is kept, to be compared there
        atomic_write_text(self.config_path, json.dumps({**previous, **resolved}, indent=1) + "\n")
        return lock

    def confirm(self, key: str, value) -> None:
        """Record ``key`` in ``config.json`` after the claim (what is known only once the model is built, such as
        its preprocessing); a resumed run that recorded another value is refused (entries of a dict the older
        record lacks are not compared)."""
        config = json.loads(self.config_path.read_text())
        new, old = json.loads(json.dumps(value)), config.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differ = [k for k in old if k in new and old[k] != new[k]]
        else:
            differ = [key] if old is not None and old != new else []
        if differ:
            raise TedlocError(f"{self.path} holds a run with another {key} ({', '.join(differ)} "
                              f"{'differs' if len(differ) < 2 else 'differ'}: {old}); choose another --out")
        config[key] = new
        atomic_write_text(self.config_path, json.dumps(config, indent=1) + "\n")

    def start(self, resolved: dict, runtime) -> None:
        """Claim the folder for a training run (the first process only; the others wait for it) and record
        the device and precision: a folder of another run is refused before any work, and so is a resume
        in another precision or number of processes (they change results; another device is allowed)."""
        dist = runtime.dist
        dist.on_main(lambda: self.claim({**resolved, "precision": runtime.precision, "processes": dist.world_size,
                                         "runtime": {**runtime.describe(), "processes": dist.world_size}}))

    def write_history(self, history: list[dict], tensorboard: bool = True) -> None:
        """``metrics.csv``, one row per epoch, rewritten atomically; the last row also goes to TensorBoard
        when it is installed."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[-1]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.metrics_path, buf.getvalue())
        factory = tensorboard_writer_factory() if tensorboard else None
        if factory is not None:
            row = history[-1]
            with factory(log_dir=str(self.tensorboard_dir)) as tb:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        tb.add_scalar(key.replace("@", "_at_"), value, global_step=int(row["epoch"]))


def set_step_lr(optimizer: torch.optim.Optimizer, lr: float, gamma: float, step: int, epoch: int) -> float:
    """The learning rate of ``epoch`` (``lr * gamma ** (epoch // step)``), set on every group (times the group's
    ``lr_scale`` where it has one: e.g. a classifier head trained 10 times faster than its backbone)."""
    value = lr * gamma ** (epoch // step)
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
    return value


def tensorboard_writer_factory():
    """``SummaryWriter`` when TensorBoard is installed, else None (logging to it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter
