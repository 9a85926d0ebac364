"""Model selection and thresholds without GT boxes: the thesis' Table 4.2 (BT/BV x TT/VT).

For every checkpoint (run x epoch) we evaluate once:

- on the validation split, against each supervision set (GT boxes, each annotator's pseudo-boxes,
  noisy GT boxes...): the per-threshold BoxAcc@50 and mIoU curves, and CL@1;
- on the test split, against GT: the same curves, and the metrics with Otsu per image.

Then, for a supervision s (one column of the table), selection on two levels, as in the thesis:

1. within each run (one configuration), the epoch with the best val MaxBoxAcc against s (``cls``: the
   best val CL@1); ties: the earliest;
2. across runs, BV (best validation): the run whose selected epoch has the best val score against s;
   BT (best test): the run whose selected epoch has the best test MaxBoxAcc (GT; the unrealistic
   reference). So BT differs by column too.

- TT (test threshold): the best threshold on the test curve (GT; the usual, optimistic practice);
- VT (validation threshold): the threshold maximising BoxAcc on val against s, applied to test (for
  each IoU threshold delta its own, as wsolevaluation's ``best_tau_list``).

Cells report test MaxBoxAcc (BoxAcc@50, largest box, at the cell's threshold), test mIoU at that
threshold, BoxAcc at IoU 30/50/70 (all boxes, wsolevaluation's MaxBoxAccV2 boxes) and their mean
(MaxBoxAccV2), as the thesis' Tables 4.7/4.8. ``cls`` has no VT (classification gives no
threshold); its row also reports Otsu per image. Class-dependent maps (CAM) are the true class's
(GT-known, as wsolevaluation). The per-checkpoint numbers are cached in ``RUN/protocol/`` (keyed by
split, supervision, interval and map convention), so adding a supervision set or a run only
evaluates what is new.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from tedloc.data.dataset import Split
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.eval.conventions import EvalProtocol
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.localizer_eval import iter_score_maps
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

__all__ = ["Checkpoint", "evaluate_checkpoint", "evaluate_runs", "select", "protocol_table", "list_checkpoints",
           "format_table", "table_csv", "CELLS", "CELL_HELP", "IOU_THRESHOLDS", "runs_by_method", "method_columns",
           "format_methods_table"]

CELLS = ("BT-TT", "BT-VT", "BV-TT", "BV-VT")
IOU_THRESHOLDS = (30, 50, 70)
CELL_HELP = ("BT: the configuration with the best test score (GT; unrealistic); BV: the one with the best val "
             "score against the column's boxes (each run's epoch is chosen on val against them first); TT: the "
             "best threshold on test (GT); VT: the threshold best on val against the column's boxes; cls: "
             "selection by val CL@1 (no threshold, so no VT; BV-Otsu: Otsu's threshold per image).")


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
# (2: NaN class scores no longer count as correct; 3: BoxAcc@30/50/70 curves of all boxes)
_CACHE_VERSION = 3


def _split_key(split: Split) -> str:
    digest = hashlib.sha1()
    for image_id, boxes in zip(split.image_ids, split.boxes):
        digest.update(image_id.encode())
        digest.update(np.ascontiguousarray(boxes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _curves(metrics: dict) -> dict:
    c = metrics["curves"]
    out = {"acc50": c["BoxAccV1@50"], "miou": c["mIoU"], "MaxBoxAcc": metrics["MaxBoxAcc"],
           **{f"v2@{d}": c[f"BoxAcc@{d}"] for d in IOU_THRESHOLDS}}
    if "CL@1" in metrics:
        out["CL@1"] = metrics["CL@1"]
    return out


def evaluate_checkpoint(ckpt: Checkpoint, splits: dict[str, Split], test: Split,
                        protocol: EvalProtocol | str = "validation", batch_size: int = 128, *,
                        runtime: Runtime) -> dict:
    """Curves of one checkpoint: ``val`` -> supervision -> curves, ``test`` -> curves + Otsu metrics.

    ``splits`` maps supervision names to val splits (same images, different boxes); ``protocol``: the
    threshold interval and whose map a class-dependent map is (a record or a preset name; its
    ``to_dict()`` keys the cache), with the run's recorded map size where it sets none. Cached per checkpoint
    in ``RUN/protocol/epoch_NNN.json``; only missing entries are computed.
    """
    from tedloc.methods import load_model
    from tedloc.methods.run_evaluation import run_protocol

    path = ckpt.run.protocol_cache(ckpt.epoch)
    cache = json.loads(path.read_text()) if path.exists() else {}
    protocol = run_protocol(ckpt.run, protocol)
    tail = f"{json.dumps(protocol.to_dict(), sort_keys=True)}:v{_CACHE_VERSION}"
    keys = {name: f"val:{_split_key(s)}:{tail}" for name, s in splits.items()}
    test_key = f"test:{_split_key(test)}:{tail}"
    todo = {name: s for name, s in splits.items() if keys[name] not in cache}
    need_test = test_key not in cache
    if todo or need_test:
        localizer = load_model(ckpt.run, ckpt.epoch, runtime=runtime)

        def maps_of(split: Split):
            for image_id, maps, scores in iter_score_maps(localizer, split, batch_size=batch_size,
                                                          protocol=protocol):
                yield image_id, next(iter(maps.values())), scores

        if todo:
            first = next(iter(todo.values()))
            evaluators = {name: WSOLEvaluator(s, protocol, masks=False) for name, s in todo.items()}
            for image_id, m, sc in maps_of(first):
                for ev in evaluators.values():
                    ev.accumulate(image_id, m, sc)
            for name, ev in evaluators.items():
                cache[keys[name]] = _curves(ev.compute())
        if need_test:
            oracle = WSOLEvaluator(test, protocol, masks=False)
            otsu = WSOLEvaluator(test, protocol, mode="otsu", masks=False)
            for image_id, m, sc in maps_of(test):
                oracle.accumulate(image_id, m, sc)
                otsu.accumulate(image_id, m, sc)
            o = otsu.compute()
            cache[test_key] = {**_curves(oracle.compute()), "otsu": {k: o[k] for k in ("MaxBoxAcc", "mIoU")}}
        atomic_write_text(path, json.dumps(cache) + "\n")
    return {"val": {name: cache[keys[name]] for name in splits}, "test": cache[test_key]}


def evaluate_runs(runs: list[str | os.PathLike], splits: dict[str, Split], test: Split,
                  protocol: EvalProtocol | str = "validation",
                  *, runtime: Runtime) -> dict[Checkpoint, dict]:
    """:func:`evaluate_checkpoint` of every epoch checkpoint of ``runs``, in order."""
    return {ckpt: evaluate_checkpoint(ckpt, splits, test, protocol, runtime=runtime)
            for run in runs for ckpt in list_checkpoints(run)}


def _at(curves: dict, index: int | None, deltas: dict[int, int | None] | None = None) -> dict:
    """A cell's numbers from one split's curves: MaxBoxAcc and mIoU at ``index`` (None: the best), BoxAcc@d at
    ``deltas[d]`` (None: the best) and their mean, MaxBoxAccV2."""
    k = int(np.argmax(curves["acc50"])) if index is None else index
    out = {"MaxBoxAcc": float(curves["acc50"][k]), "mIoU": float(curves["miou"][k]), "tau_index": k}
    if all(f"v2@{d}" in curves for d in IOU_THRESHOLDS):
        deltas = deltas or {}
        for d in IOU_THRESHOLDS:
            curve = curves[f"v2@{d}"]
            j = deltas.get(d)
            out[f"@{d}"] = float(max(curve) if j is None else curve[j])
        out["MaxBoxAccV2"] = float(np.mean([out[f"@{d}"] for d in IOU_THRESHOLDS]))
    return out


def select(results: dict[Checkpoint, dict], supervision: str) -> dict:
    """The four cells for one supervision (``cls`` or a name of the val supervision sets): each run's epoch
    chosen on val against it, then the run by val (BV) or by test (BT); see the module docstring."""
    ckpts = list(results)

    def val_score(c: Checkpoint) -> float:
        if supervision == "cls":
            val = next(iter(results[c]["val"].values()))
            return float(val.get("CL@1", float("nan")))
        return float(max(results[c]["val"][supervision]["acc50"]))

    def test_score(c: Checkpoint) -> float:
        return float(max(results[c]["test"]["acc50"]))

    def earliest_best(candidates: list[Checkpoint], score) -> Checkpoint:
        return max(candidates, key=lambda c: (np.nan_to_num(score(c), nan=-np.inf), -ckpts.index(c)))

    runs: dict = {}
    for c in ckpts:
        runs.setdefault(c.run, []).append(c)
    chosen = [earliest_best(epochs, val_score) for epochs in runs.values()]  # level 1: the epoch of each run
    bt, bv = earliest_best(chosen, test_score), earliest_best(chosen, val_score)  # level 2: the configuration

    def cell(c: Checkpoint, threshold_from_val: bool) -> dict:
        test = results[c]["test"]
        if not threshold_from_val:
            return {**_at(test, None), "checkpoint": c.name}
        val = results[c]["val"][supervision]
        deltas = {d: int(np.argmax(val[f"v2@{d}"])) for d in IOU_THRESHOLDS if f"v2@{d}" in val}
        return {**_at(test, int(np.argmax(val["acc50"])), deltas), "checkpoint": c.name}

    cells = {"BT-TT": cell(bt, False), "BV-TT": cell(bv, False)}
    if supervision == "cls":
        cells["BT-VT"] = cells["BV-VT"] = None
        cells["BV-Otsu"] = {**results[bv]["test"]["otsu"], "checkpoint": bv.name}
    else:
        cells["BT-VT"] = cell(bt, True)
        cells["BV-VT"] = cell(bv, True)
    return cells


def protocol_table(results: dict[Checkpoint, dict], supervisions: list[str]) -> dict:
    """supervision -> cells (see :func:`select`), for ``cls`` and every supervision set."""
    return {s: select(results, s) for s in ["cls", *supervisions]}


def format_table(table: dict, detail: bool = False) -> str:
    """The thesis' layout: one row per cell, one column per supervision; MaxBoxAcc / mIoU, or (``detail``,
    Tables 4.7/4.8) BoxAcc at IoU 30/50/70 / MaxBoxAccV2; the cells explained under the table."""
    names = list(table)
    lines = ["| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def text(v: dict | None) -> str:
        if v is None:
            return "-"
        if not detail:
            return f"{v['MaxBoxAcc']:.2f} / {v['mIoU']:.2f}"
        if "MaxBoxAccV2" not in v:
            return "-"
        return " / ".join(f"{v[k]:.2f}" for k in (*(f"@{d}" for d in IOU_THRESHOLDS), "MaxBoxAccV2"))

    for cell in (*CELLS, "BV-Otsu"):
        row = [text(table[s].get(cell)) for s in names]
        if cell == "BV-Otsu" and all(r == "-" for r in row):
            continue
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    what = ("BoxAcc at IoU 30 / 50 / 70 / MaxBoxAccV2 (%, all boxes)" if detail
            else "MaxBoxAcc / mIoU (%, IoU 0.5, largest box)")
    lines += ["", f"Cells: test {what}. {CELL_HELP}"]
    return "\n".join(lines)


def table_csv(table: dict) -> str:
    """The table as CSV: one row per (supervision, cell) with MaxBoxAcc, mIoU, BoxAcc@30/50/70, MaxBoxAccV2 and
    the checkpoint."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    extra = [*(f"@{d}" for d in IOU_THRESHOLDS), "MaxBoxAccV2"]
    writer.writerow(["supervision", "cell", "MaxBoxAcc", "mIoU", *(k.replace("@", "BoxAcc@") for k in extra),
                     "checkpoint"])
    for s, cells in table.items():
        for cell, v in cells.items():
            if v is not None:
                writer.writerow([s, cell, f"{v['MaxBoxAcc']:.4f}", f"{v['mIoU']:.4f}",
                                 *(f"{v[k]:.4f}" if k in v else "" for k in extra), v["checkpoint"]])
    return buf.getvalue()


def runs_by_method(runs: list[str | os.PathLike]) -> dict[str, list[str]]:
    """The runs grouped by the method that trained them (its ``model.json`` kind), in the order they come: each
    method's runs are its configurations."""
    from tedloc.methods import method_for_kind

    groups: dict[str, list[str]] = {}
    for run in runs:
        folder = RunFolder(run)
        if not folder.is_finished():
            raise TedlocError(f"{run}: not a finished run (no model.json)")
        method = method_for_kind(folder.metadata().get("kind"), str(folder.metadata_path))
        groups.setdefault(method.name, []).append(str(run))
    return groups


def method_columns(table: dict) -> list[tuple[str, str]]:
    """The columns of the methods table of one method's ``table`` (:func:`protocol_table`): ``(supervision,
    cell)`` for ``cls`` (BT-TT, BV-TT, BV-Otsu) and every cell of the other supervisions, in the table's order."""
    return [(s, cell) for s in table for cell in ((*CELLS[:1], "BV-TT", "BV-Otsu") if s == "cls" else CELLS)]


def format_methods_table(tables: dict[str, dict], detail: bool = False) -> str:
    """The thesis' layout over several methods (Tables 4.2/4.3/4.6): one row per method, one column per
    supervision and selection/threshold cell (``GT BT-TT``: the usual oracle; ``<pseudo> BV-VT``: the realistic
    one); cells as :func:`format_table`'s (MaxBoxAcc / mIoU, or with ``detail`` MaxBoxAccV2 / BoxAcc@50)."""
    columns = list(dict.fromkeys(c for table in tables.values() for c in method_columns(table)))
    lines = ["| method | " + " | ".join(f"{s} {cell}" for s, cell in columns) + " |",
             "|---|" + "---|" * len(columns)]

    def text(v: dict | None) -> str:
        if v is None:
            return "-"
        if detail:
            return f"{v['MaxBoxAccV2']:.2f} / {v['@50']:.2f}" if "MaxBoxAccV2" in v else "-"
        return f"{v['MaxBoxAcc']:.2f} / {v['mIoU']:.2f}"

    for method, table in tables.items():
        lines.append(f"| {method} | " + " | ".join(text(table.get(s, {}).get(cell)) for s, cell in columns) + " |")
    what = "MaxBoxAccV2 / BoxAcc@50 (%, all boxes)" if detail else "MaxBoxAcc / mIoU (%, IoU 0.5, largest box)"
    lines += ["", f"Cells: test {what}; each method's runs are its configurations. {CELL_HELP}"]
    return "\n".join(lines)
