"""A localizer on a video dataset's annotated frames: every image metric per frame, and CorLoc both ways.

The papers' CorLoc picks a threshold per class on the test frames themselves (``oracle``). The realistic CorLoc
takes one threshold chosen on the val frames (their pooled best BoxAcc at IoU 0.5, against GT boxes, or against
pseudo-boxes when the val split given carries them instead) and applies it to every test class (``realistic``).
Both are reported side by side, each saying what chose its thresholds.
"""
from __future__ import annotations

from tedloc.data.dataset import Split
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.eval.corloc import CorLocAccumulator
from tedloc.eval.evaluator import WSOLEvaluator
from tedloc.eval.localizer_eval import iter_score_maps
from tedloc.eval.mask_metrics import load_gt_mask
from tedloc.models.localizer import LocalizationModel

__all__ = ["evaluate_video_localizer", "val_threshold"]


def _peak_in_mask(split: Split, image_id: str, score_map) -> bool:
    """Whether the map's highest pixel lies on the frame's GT mask (the union of its instances)."""
    import numpy as np

    i = split.index_of(image_id)
    paths, ignore = split.mask_files(i)
    h, w = score_map.shape
    mask = load_gt_mask(paths, ignore, (w, h))
    y, x = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
    return bool(mask[y, x] == 1)


def val_threshold(localizer: LocalizationModel, val: Split, protocol: EvalProtocol | str = "standard", *,
                  kind: str | None = None, batch_size: int = 64, workers: int = 0) -> tuple[float, float]:
    """The threshold of best pooled BoxAcc (IoU 0.5) of the map ``kind`` (default the localizer's) on the ``val``
    frames, and that BoxAcc."""
    protocol = eval_protocol(protocol)
    kind = kind or localizer.map_kind
    acc = CorLocAccumulator(val, protocol.thresholds(), localizer.class_names)
    for image_id, maps, scores in iter_score_maps(localizer, val, (kind,), batch_size, workers, protocol=protocol):
        acc.accumulate(image_id, maps[kind], scores)
    return acc.pooled_threshold()


def evaluate_video_localizer(localizer: LocalizationModel, split: Split, protocol: EvalProtocol | str = "standard", *,
                             val: Split | None = None, kind: str | None = None, batch_size: int = 64,
                             workers: int = 0, masks: bool | None = None) -> dict:
    """The metrics of the map ``kind`` (default the localizer's own) of ``localizer`` on the annotated frames of
    ``split`` (one pass): tedloc's image metrics per frame, plus ``corloc``: ``oracle`` (the papers': per-class
    thresholds on ``split``) and, when ``val`` is given, ``realistic`` (one threshold chosen on ``val``)."""
    protocol = eval_protocol(protocol)
    kind = kind or localizer.map_kind
    chosen = val_threshold(localizer, val, protocol, kind=kind, batch_size=batch_size, workers=workers) \
        if val is not None else None
    evaluator = WSOLEvaluator(split, protocol, masks=masks, num_classes=len(localizer.class_names))
    corloc = CorLocAccumulator(split, protocol.thresholds(), localizer.class_names)
    pointing = []
    for image_id, maps, scores in iter_score_maps(localizer, split, (kind,), batch_size, workers, protocol=protocol):
        evaluator.accumulate(image_id, maps[kind], scores)
        corloc.accumulate(image_id, maps[kind], scores)
        if split.has_masks and split.mask_root is not None and masks is not False:
            pointing.append(_peak_in_mask(split, image_id, maps[kind]))
    metrics = evaluator.compute()
    metrics.pop("curves", None)
    result = corloc.compute(None if chosen is None else chosen[0])
    block = {"oracle": {"CorLoc": result["CorLoc"], "per_class": result["CorLoc_per_class"],
                        "thresholds": result["CorLoc_thresholds"],
                        "chosen_on": f"{split.name} frames, per class (the papers' protocol: test-oracle)"},
             "CL": result["CL"], "frames": result["frames"], "iou": result["iou"]}
    if pointing:  # where the map looks, whatever its box: its peak on the object's mask
        block["peak_in_mask"] = 100.0 * sum(pointing) / len(pointing)
    if chosen is not None:
        block["realistic"] = {"CorLoc": result["CorLoc@tau"], "per_class": result["CorLoc@tau_per_class"],
                              "threshold": result["tau"], "val_BoxAcc": chosen[1],
                              "chosen_on": f"{val.name} frames, pooled (no {split.name} box used)"}
    metrics["corloc"] = block
    metrics["map"] = kind
    return metrics
