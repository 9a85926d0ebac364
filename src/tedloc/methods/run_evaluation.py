"""A run evaluated on a split, and its operating threshold stored: what ``tedloc evaluate --run`` does."""
from __future__ import annotations

import os

from tedloc.data import load_dataset
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.eval.localizer_eval import evaluate_localizer
from tedloc.methods.registry import load_model
from tedloc.utils.device import Runtime
from tedloc.utils.io import check_writable

__all__ = ["evaluate_run"]


def _has_split(data: str | os.PathLike, split: str) -> bool:
    from pathlib import Path

    return (Path(data) / "metadata" / split).is_dir()


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike, split: str = "test",
                 protocol: EvalProtocol | str = "standard", *, runtime: Runtime, map_kind: str | None = None,
                 batch_size: int = 64, workers: int = 0, store_threshold: bool = False) -> dict:
    """Every map of ``run``'s localizer scored on ``split`` of ``data`` under ``protocol`` (``map_kind``, the
    one reported first); with ``store_threshold``, the best threshold found (``oracle`` mode, GT boxes) is
    stored in the run for ``tedloc predict``. Under torchrun the processes share the images; the first one
    writes."""
    folder = RunFolder(run)
    protocol = eval_protocol(protocol)
    if store_threshold:
        if protocol.mode != "oracle":
            raise TedlocError("--save-threshold stores the best threshold of --mode oracle")
        if folder.path.is_dir():  # before the work, not after it (a missing run fails to load below, no folder made)
            runtime.dist.on_main(lambda: check_writable(folder.metadata_path))
    dataset = load_dataset(data, splits=[split])
    part = dataset[split]
    if store_threshold and not part.has_boxes:
        raise TedlocError(f"--save-threshold needs GT boxes; split {split!r} of {data} has none")
    localizer = load_model(folder, runtime=runtime, map_kind=map_kind)
    if dataset.class_names != localizer.class_names:
        raise TedlocError(f"{data} has other classes than the run {run} was trained on")
    if dataset.is_video:  # annotated frames: the image metrics and CorLoc, its threshold chosen on val if there is one
        from tedloc.eval.video_eval import evaluate_video_localizer

        val = load_dataset(data, splits=["val"])["val"] if split != "val" and _has_split(data, "val") else None
        metrics = evaluate_video_localizer(localizer, part, protocol, val=val if val is not None and val.has_boxes
                                           else None, batch_size=batch_size, workers=workers)
    else:
        metrics = evaluate_localizer(localizer, part, protocol, batch_size=batch_size, workers=workers,
                                     all_maps=True, num_classes=dataset.num_classes, dist=runtime.dist)
    if store_threshold and runtime.dist.is_main:
        folder.store_threshold(metrics["threshold"], {"split": split, "data": str(data), "criterion": "MaxBoxAcc"})
    return metrics
