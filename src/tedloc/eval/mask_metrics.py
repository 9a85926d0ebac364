"""PxAP (pixel average precision) with ignore masks, exactly as wsolevaluation's MaskEvaluator.

Histograms of the raw float64 scores of positive and negative pixels (ignore pixels dropped)
over the bin edges ``thresholds + [1, 2, 3]`` (left-closed bins, the last one closed); then
precision and recall at each edge from the highest down, and the right-step sum
``sum_j P_j (R_j - R_{j-1})`` that skips 0/0 precisions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from tedloc.errors import DataError

__all__ = ["MaskAccumulator", "load_gt_mask", "IGNORE"]

IGNORE = 255


def _read_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError("cannot read mask (missing or not an image)", path)
    resized = cv2.resize(image.astype(np.float32), tuple(size), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def load_gt_mask(mask_paths: list, ignore_path, size: tuple[int, int]) -> np.ndarray:
    """Coded GT mask at ``size`` = (width, height): 1 foreground, 255 ignore, 0 background.

    Instance masks are read as grayscale (cv2's luma weights), resized with cv2's nearest rule
    and thresholded at 0.5; the foreground is their union; ignore = ignore mask minus foreground.
    """
    fg = np.zeros((size[1], size[0]), dtype=bool)
    for path in mask_paths:
        fg |= _read_mask(path, size)
    coded = fg.astype(np.uint8)
    if ignore_path is not None:
        ignore = _read_mask(ignore_path, size) & ~fg
        coded[ignore] = IGNORE
    return coded


@dataclass
class MaskAccumulator:
    """Score histograms of GT-positive and GT-negative pixels over the threshold bins."""

    thresholds: np.ndarray
    positive: np.ndarray = field(default=None)
    negative: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        self.edges = np.append(np.asarray(self.thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        bins = len(self.edges) - 1
        self.positive = np.zeros(bins) if self.positive is None else self.positive
        self.negative = np.zeros(bins) if self.negative is None else self.negative

    def _histogram(self, scores: np.ndarray) -> np.ndarray:
        # np.histogram semantics: bin i holds edges[i] <= s < edges[i+1]; the last bin is closed
        idx = np.searchsorted(self.edges, scores, side="right") - 1
        idx = np.clip(idx, 0, len(self.edges) - 2)
        return np.bincount(idx, minlength=len(self.edges) - 1).astype(np.float64)

    def add(self, score_map: np.ndarray, gt_mask: np.ndarray) -> None:
        """Add one map's pixel scores by GT mask value: 1 positive, 0 negative, others (ignored) skipped."""
        if score_map.shape != gt_mask.shape:
            raise ValueError(f"score map {score_map.shape} and mask {gt_mask.shape} differ in shape")
        self.positive += self._histogram(score_map[gt_mask == 1])
        self.negative += self._histogram(score_map[gt_mask == 0])

    def merge(self, other: "MaskAccumulator") -> None:
        """Add the histograms of ``other`` (same thresholds) to these."""
        self.positive += other.positive
        self.negative += other.negative

    def compute(self) -> dict:
        """``PxAP`` in percent plus the precision/recall curve (highest threshold first)."""
        num_pos = self.positive.sum()
        tp = self.positive[::-1].cumsum()
        fp = self.negative[::-1].cumsum()
        if num_pos <= 0:
            raise ValueError("PxAP: no positive ground-truth pixel in the evaluated maps")
        if ((tp + fp) <= 0).all():
            raise ValueError("PxAP: no prediction (every pixel is ignored)")
        predicted = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / predicted
        recall = tp / num_pos
        nonzero = predicted[1:] != 0
        pxap = float((precision[1:] * np.diff(recall))[nonzero].sum() * 100)
        return {"PxAP": pxap, "curves": {"precision": np.nan_to_num(precision).tolist(), "recall": recall.tolist()}}
