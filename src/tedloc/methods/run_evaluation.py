"""A run evaluated on a split, and its operating threshold stored: what ``tedloc evaluate --run`` does.

Two things of the run's record decide its evaluation besides the protocol:

- its map size (the config's ``map_size``, e.g. 256 for TeD-Loc's paper recipes): the maps are scored at it
  unless the protocol sets one (``--map-size``); runs without the field are scored at their input size;
- its threshold chosen on the val split (``model.json``'s ``threshold`` with ``threshold_source.split`` val,
  against GT or pseudo-boxes): GT-known, Top-1/Top-5 Loc and mIoU are reported at it too, as
  ``Top1Loc@val_thr`` ..., beside the oracle ``Top1Loc`` ...; a run without one says so under
  ``not_computed``.
"""
from __future__ import annotations

import os

from tedloc.data import load_dataset
from tedloc.engine.run_folder import RunFolder
from tedloc.engine.run_record import RunRecord
from tedloc.errors import TedlocError
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.eval.evaluator import VAL_THRESHOLD_METRICS
from tedloc.eval.localizer_eval import evaluate_localizer
from tedloc.methods.registry import load_model
from tedloc.utils.device import Runtime
from tedloc.utils.io import check_writable

__all__ = ["evaluate_run", "run_protocol", "run_val_threshold"]


def _has_split(data: str | os.PathLike, split: str) -> bool:
    from pathlib import Path

    return (Path(data) / "metadata" / split).is_dir()


def run_protocol(run: str | os.PathLike | RunFolder, protocol: EvalProtocol | str = "standard") -> EvalProtocol:
    """``protocol`` with the map size ``run`` records (its config's ``map_size``) where the protocol sets none;
    a protocol's own map size wins, and a run without the field keeps None (its input size)."""
    protocol = eval_protocol(protocol)
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    recorded = folder.record().config.get("map_size")
    if protocol.map_size is not None or recorded is None:
        return protocol
    return protocol.replace(map_size=int(recorded))


def run_val_threshold(record: RunRecord, map_kind: str | None = None) -> tuple[float | None, dict | None, str]:
    """``(threshold, its source, why there is none)`` of a run's threshold chosen on the val split (GT boxes, or
    pseudo-boxes under the realistic protocol): the stored threshold when its source says split val, for the
    run's own map (``map_kind`` None); else None and the reason, one line."""
    if record.threshold is None:
        return None, None, "the run stores no threshold chosen on val (no val split with boxes, or selection last)"
    source = record.threshold_source
    if not isinstance(source, dict) or source.get("split") != "val":
        where = "an unrecorded split" if not isinstance(source, dict) else f"split {source.get('split')!r}"
        return None, None, f"the run's stored threshold was chosen on {where}, not on val"
    if map_kind is not None:
        return None, None, f"the run's val threshold is of its own map, not of --map {map_kind}"
    return float(record.threshold), dict(source), ""


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike, split: str = "test",
                 protocol: EvalProtocol | str = "standard", *, runtime: Runtime, map_kind: str | None = None,
                 batch_size: int = 64, workers: int = 0, store_threshold: bool = False,
                 target_layer: str | None = None) -> dict:
    """Every map of ``run``'s localizer scored on ``split`` of ``data`` under ``protocol`` (``map_kind``, the
    one reported first); with ``store_threshold``, the best threshold found (``oracle`` mode, GT boxes) is
    stored in the run for ``tedloc predict``. The maps are scored at the run's recorded map size unless
    ``protocol`` sets one (:func:`run_protocol`); Top-1/Top-5 Loc are reported at the run's val threshold too
    (:func:`run_val_threshold`). ``target_layer``: the module path of the post-hoc maps (:func:`load_model`).
    Under torchrun the processes share the images; the first one writes."""
    folder = RunFolder(run)
    protocol = run_protocol(folder, protocol)
    if store_threshold:
        if protocol.mode != "oracle":
            raise TedlocError("--save-threshold stores the best threshold of --mode oracle")
        if folder.path.is_dir():  # before the work, not after it (a missing run fails to load below, no folder made)
            runtime.dist.on_main(lambda: check_writable(folder.metadata_path))
    dataset = load_dataset(data, splits=[split])
    part = dataset[split]
    if store_threshold and not part.has_boxes:
        raise TedlocError(f"--save-threshold needs GT boxes; split {split!r} of {data} has none")
    localizer = load_model(folder, runtime=runtime, map_kind=map_kind, target_layer=target_layer)
    if dataset.class_names != localizer.class_names:
        raise TedlocError(f"{data} has other classes than the run {run} was trained on")
    if dataset.is_video:  # annotated frames: the image metrics and CorLoc, its threshold chosen on val if there is one
        from tedloc.eval.video_eval import evaluate_video_localizer

        val = load_dataset(data, splits=["val"])["val"] if split != "val" and _has_split(data, "val") else None
        metrics = evaluate_video_localizer(localizer, part, protocol, val=val if val is not None and val.has_boxes
                                           else None, batch_size=batch_size, workers=workers)
    else:
        threshold, source, why = run_val_threshold(folder.record(), map_kind)
        metrics = evaluate_localizer(localizer, part, protocol, batch_size=batch_size, workers=workers,
                                     all_maps=True, num_classes=dataset.num_classes, dist=runtime.dist,
                                     val_threshold=threshold if part.has_boxes else None)
        if source is not None and part.has_boxes:
            metrics["val_threshold_source"] = source
        elif part.has_boxes:
            metrics.setdefault("not_computed", []).append(f"{', '.join(VAL_THRESHOLD_METRICS)} not computed: {why}")
    if store_threshold and runtime.dist.is_main:
        folder.store_threshold(metrics["threshold"], {"split": split, "data": str(data), "criterion": "MaxBoxAcc"})
    return metrics
