"""The no-look baselines every WSOL method must beat; neither looks at the image.

- The centered box of the best fixed size: for each candidate side (a fraction of the image side), every map is 1
  inside the centered square and 0 outside; the side with the best MaxBoxAcc on the split it is chosen on is kept
  (ties: the higher mIoU).
- The centered Gaussian (Choe et al. 2020's center baseline): one isotropic Gaussian bump in the middle of every
  map, scored like any method's map (every threshold, so its best box size comes from the threshold sweep).
"""
from __future__ import annotations

import numpy as np

from tedloc.data.dataset import Split
from tedloc.errors import OptionError
from tedloc.eval.conventions import EvalProtocol
from tedloc.eval.evaluator import WSOLEvaluator

__all__ = ["centered_box_map", "centered_box_metrics", "centered_box_baseline", "centered_gaussian_map",
           "centered_gaussian_metrics", "CENTERED_GAUSSIAN_SIGMA"]

CENTERED_GAUSSIAN_SIGMA = 0.5  # in units of half the map's side (the map spans [-1, 1]); corners at exp(-4)


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


def centered_gaussian_map(size: int, sigma: float = CENTERED_GAUSSIAN_SIGMA) -> np.ndarray:
    """A ``size`` x ``size`` map ``exp(-(u^2 + v^2) / (2 sigma^2))``, ``u, v`` the pixel centres in [-1, 1]."""
    if not sigma > 0:
        raise OptionError(f"the centered Gaussian's sigma must be > 0, got {sigma}")
    u = 2 * (np.arange(size) + 0.5) / size - 1
    return np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * sigma ** 2))


def centered_gaussian_metrics(split: Split, size: int, sigma: float = CENTERED_GAUSSIAN_SIGMA,
                              protocol: EvalProtocol | str = "standard") -> dict:
    """Metrics of the centered Gaussian (maps of ``size`` x ``size``) on ``split`` under ``protocol`` (a
    record or a preset's name; the standard one: 1,000 thresholds)."""
    evaluator = WSOLEvaluator(split, protocol)
    m = centered_gaussian_map(size, sigma)
    for image_id in split.image_ids:
        evaluator.accumulate(image_id, m)
    return evaluator.compute()
