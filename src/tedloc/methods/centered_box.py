"""The trivial baseline every WSOL method must beat: a centered box of the best fixed size.

No image is looked at. For each candidate side (a fraction of the image side), every map is 1
inside the centered square and 0 outside; the side with the best MaxBoxAcc on the evaluated
split is kept (ties: the higher mIoU), an oracle choice, as favourable to the baseline as possible.
"""
from __future__ import annotations

import numpy as np

from tedloc.data.dataset import Split
from tedloc.eval.evaluator import WSOLEvaluator

__all__ = ["centered_box_map", "centered_box_metrics", "centered_box_baseline"]


def centered_box_map(size: int, fraction: float) -> np.ndarray:
    """A ``size`` x ``size`` map, 1 on the centered square of side ``round(fraction * size)``."""
    side = max(1, int(round(fraction * size)))
    start = (size - side) // 2
    m = np.zeros((size, size))
    m[start:start + side, start:start + side] = 1.0
    return m


def centered_box_metrics(split: Split, size: int, fraction: float) -> dict:
    """Metrics of the centered box of side ``fraction`` (maps of ``size`` x ``size``) on ``split``."""
    evaluator = WSOLEvaluator(split, interval=0.5)  # a binary map gives the same box at every threshold
    m = centered_box_map(size, fraction)
    for image_id in split.image_ids:
        evaluator.accumulate(image_id, m)
    return evaluator.compute()


def centered_box_baseline(split: Split, size: int = 224, fractions=np.arange(0.3, 1.0001, 0.05)) -> tuple[float, dict]:
    """(best fraction, its metrics) over ``fractions``; maps of ``size`` x ``size`` (the input size)."""
    best = None
    for f in fractions:
        metrics = centered_box_metrics(split, size, float(f))
        key = (metrics["MaxBoxAcc"], metrics["mIoU"])  # ties in accuracy: the better fitting box
        if best is None or key > (best[1]["MaxBoxAcc"], best[1]["mIoU"]):
            best = (float(f), metrics)
    return best
