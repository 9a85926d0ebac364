"""Model selection and thresholds without GT boxes: the thesis' Table 4.2 (BT/BV x TT/VT).

For every checkpoint (run x epoch) we evaluate once:

- on the validation split, against each supervision set (GT boxes, each annotator's pseudo-boxes,
  noisy GT boxes...): the per-threshold BoxAcc@50 and mIoU curves, and CL@1;
- on the test split, against GT: the same curves, and the metrics with Otsu per image.

Then, for a supervision s:

- BV (best validation): the checkpoint with the best val MaxBoxAcc against s (``cls``: best val CL@1);
- BT (best test): the checkpoint with the best test MaxBoxAcc (GT; the unrealistic reference);
- TT (test threshold): the best threshold on the test curve (GT; the usual, optimistic practice);
- VT (validation threshold): the threshold maximising BoxAcc@50 on val against s, applied to test.

Cells report test MaxBoxAcc (BoxAcc@50 at the cell's threshold) and test mIoU at that threshold.
``cls`` has no VT (classification gives no threshold); its row also reports Otsu per image.
The per-checkpoint numbers are cached in ``RUN/protocol/`` (keyed by split, supervision and
interval), so adding a supervision set or a run only evaluates what is new.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tedloc.data.dataset import Split
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.localizer_eval import iter_score_maps
from tedloc.utils.io import atomic_write_text

__all__ = ["Checkpoint", "evaluate_checkpoint", "evaluate_runs", "select", "protocol_table", "list_checkpoints",
           "format_table", "table_csv", "CELLS"]

CELLS = ("BT-TT", "BT-VT", "BV-TT", "BV-VT")


@dataclass(frozen=True)
class Checkpoint:
    """One epoch of one run: a candidate of model selection."""

    run: RunFolder
    epoch: int

    @property
    def name(self) -> str:
        """``<run folder name>@<epoch>``."""
        return f"{self.run.name}@{self.epoch}"


def list_checkpoints(run: str | os.PathLike | RunFolder) -> list[Checkpoint]:
    """Every epoch checkpoint of a finished run, in order."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    if not run.is_finished():
        raise TedlocError(f"{run}: not a finished run (no model.json)")
    epochs = run.epochs()
    if not epochs:
        raise TedlocError(f"{run}: no epoch checkpoints")
    return [Checkpoint(run, e) for e in epochs]


# part of every cache key: bump it when a change of the evaluation changes its numbers
# (2: NaN class scores no longer count as correct)
_CACHE_VERSION = 2


def _split_key(split: Split) -> str:
    digest = hashlib.sha1()
    for image_id, boxes in zip(split.image_ids, split.boxes):
        digest.update(image_id.encode())
        digest.update(np.ascontiguousarray(boxes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _curves(metrics: dict) -> dict:
    c = metrics["curves"]
    out = {"acc50": c["BoxAccV1@50"], "miou": c["mIoU"], "MaxBoxAcc": metrics["MaxBoxAcc"]}
    if "CL@1" in metrics:
        out["CL@1"] = metrics["CL@1"]
    return out


def evaluate_checkpoint(ckpt: Checkpoint, splits: dict[str, Split], test: Split, interval: float = 0.01,
                        batch_size: int = 128, runtime=None) -> dict:
    """Curves of one checkpoint: ``val`` -> supervision -> curves, ``test`` -> curves + Otsu metrics.

    ``splits`` maps supervision names to val splits (same images, different boxes). Cached per
    checkpoint in ``RUN/protocol/epoch_NNN.json``; only missing entries are computed.
    """
    from tedloc.methods import load_model

    path = ckpt.run.protocol_cache(ckpt.epoch)
    cache = json.loads(path.read_text()) if path.exists() else {}
    keys = {name: f"val:{_split_key(s)}:{interval}:v{_CACHE_VERSION}" for name, s in splits.items()}
    test_key = f"test:{_split_key(test)}:{interval}:v{_CACHE_VERSION}"
    todo = {name: s for name, s in splits.items() if keys[name] not in cache}
    need_test = test_key not in cache
    if todo or need_test:
        localizer = load_model(ckpt.run, ckpt.epoch, runtime=runtime)

        def maps_of(split: Split):
            for image_id, maps, scores in iter_score_maps(localizer, split, batch_size=batch_size):
                yield image_id, next(iter(maps.values())), scores

        if todo:
            first = next(iter(todo.values()))
            evaluators = {name: WSOLEvaluator(s, interval=interval, masks=False) for name, s in todo.items()}
            for image_id, m, sc in maps_of(first):
                for ev in evaluators.values():
                    ev.accumulate(image_id, m, sc)
            for name, ev in evaluators.items():
                cache[keys[name]] = _curves(ev.compute())
        if need_test:
            oracle = WSOLEvaluator(test, interval=interval, masks=False)
            otsu = WSOLEvaluator(test, mode="otsu", masks=False)
            for image_id, m, sc in maps_of(test):
                oracle.accumulate(image_id, m, sc)
                otsu.accumulate(image_id, m, sc)
            o = otsu.compute()
            cache[test_key] = {**_curves(oracle.compute()), "otsu": {k: o[k] for k in ("MaxBoxAcc", "mIoU")}}
        atomic_write_text(path, json.dumps(cache) + "\n")
    return {"val": {name: cache[keys[name]] for name in splits}, "test": cache[test_key]}


def evaluate_runs(runs: list[str | os.PathLike], splits: dict[str, Split], test: Split, interval: float = 0.01,
                  runtime=None) -> dict[Checkpoint, dict]:
    """:func:`evaluate_checkpoint` of every epoch checkpoint of ``runs``, in order."""
    return {ckpt: evaluate_checkpoint(ckpt, splits, test, interval, runtime=runtime)
            for run in runs for ckpt in list_checkpoints(run)}


def select(results: dict[Checkpoint, dict], supervision: str) -> dict:
    """The four cells for one supervision (``cls`` or a name of the val supervision sets)."""
    ckpts = list(results)

    def test_at(c: Checkpoint, index: int | None) -> dict:
        t = results[c]["test"]
        k = int(np.argmax(t["acc50"])) if index is None else index
        return {"MaxBoxAcc": float(t["acc50"][k]), "mIoU": float(t["miou"][k]), "checkpoint": c.name, "tau_index": k}

    def val_tau(c: Checkpoint) -> int | None:
        if supervision == "cls":
            return None
        return int(np.argmax(results[c]["val"][supervision]["acc50"]))

    def val_score(c: Checkpoint) -> float:
        if supervision == "cls":
            val = next(iter(results[c]["val"].values()))
            return float(val.get("CL@1", float("nan")))
        return float(max(results[c]["val"][supervision]["acc50"]))

    bt = max(ckpts, key=lambda c: (max(results[c]["test"]["acc50"]), -ckpts.index(c)))
    bv = max(ckpts, key=lambda c: (val_score(c), -ckpts.index(c)))
    cells = {"BT-TT": test_at(bt, None), "BV-TT": test_at(bv, None)}
    if supervision == "cls":
        cells["BT-VT"] = cells["BV-VT"] = None
        cells["BV-Otsu"] = {**results[bv]["test"]["otsu"], "checkpoint": bv.name}
    else:
        cells["BT-VT"] = test_at(bt, val_tau(bt))
        cells["BV-VT"] = test_at(bv, val_tau(bv))
    return cells


def protocol_table(results: dict[Checkpoint, dict], supervisions: list[str]) -> dict:
    """supervision -> cells (see :func:`select`), for ``cls`` and every supervision set."""
    return {s: select(results, s) for s in ["cls", *supervisions]}


def format_table(table: dict, thresholds: list[float] | None = None) -> str:
    """The thesis' layout: one row per cell, one column per supervision; MaxBoxAcc / mIoU."""
    names = list(table)
    lines = ["| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for cell in (*CELLS, "BV-Otsu"):
        row = []
        for s in names:
            v = table[s].get(cell)
            row.append("-" if v is None else f"{v['MaxBoxAcc']:.2f} / {v['mIoU']:.2f}")
        if cell == "BV-Otsu" and all(r == "-" for r in row):
            continue
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def table_csv(table: dict) -> str:
    """The table as CSV: one row per (supervision, cell) with MaxBoxAcc, mIoU and the checkpoint."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["supervision", "cell", "MaxBoxAcc", "mIoU", "checkpoint"])
    for s, cells in table.items():
        for cell, v in cells.items():
            if v is not None:
                writer.writerow([s, cell, f"{v['MaxBoxAcc']:.4f}", f"{v['mIoU']:.4f}", v["checkpoint"]])
    return buf.getvalue()
