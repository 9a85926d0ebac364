"""CorLoc: the video WSOL metric of YouTube-Objects (TrCAM-V's and TCAM's public code), and its realistic variant.

For each annotated frame, the map (resized to the protocol's map size and min-max normalised, as every tedloc
metric) is cut at every threshold ``tau`` of the protocol's list (``u8 > int(tau * max(u8))``); the box of the
largest contour is the frame's box (wsolevaluation's single-box rule, :mod:`tedloc.eval.boxes`). The frame is
correct when that box's IoU (inclusive pixels) with any of its GT boxes (rescaled to the map, truncated) is at
least ``iou`` (0.5).

- ``BoxAcc_c(tau)``: 100 x the share of correct frames of class ``c``.
- **CorLoc_c** (the papers'): ``max_tau BoxAcc_c(tau)``: a threshold per class, picked on the test frames.
- **CorLoc** (the papers' "Avg"): the mean of CorLoc_c over the classes that have frames.
- **CorLoc at a fixed threshold** (realistic): ``BoxAcc_c(tau*)`` with ``tau*`` chosen elsewhere (the val split's
  pooled best, with GT boxes or pseudo-boxes), and their class mean; no test box chooses anything.
- **CL**: the share of frames whose top class is their video's class.
"""
from __future__ import annotations

import numpy as np

from tedloc.data.dataset import Split
from tedloc.eval.boxes import box_iou, boxes_at_cuts, cuts_for_thresholds, rescale_boxes
from tedloc.eval.scoremaps import quantize_scoremap

__all__ = ["CorLocAccumulator", "CORLOC_IOU"]

CORLOC_IOU = 0.5


class CorLocAccumulator:
    """Per frame, which thresholds give a correct box; then CorLoc per class, its mean, CL (module docstring).

    Args:
        split: the annotated frames (labels, sizes, GT boxes).
        thresholds: the thresholds ``tau`` in [0, 1), ascending.
        class_names: names of the class indices, for the per-class tables.
        iou: the IoU a box needs to be correct.
    """

    def __init__(self, split: Split, thresholds: np.ndarray, class_names: list[str], iou: float = CORLOC_IOU):
        self.split = split
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.class_names = list(class_names)
        self.iou = float(iou)
        self.hits = np.zeros((len(split), len(self.thresholds)), dtype=bool)
        self.classified = np.zeros(len(split), dtype=bool)
        self.seen = np.zeros(len(split), dtype=bool)

    def accumulate(self, image_id: str, score_map: np.ndarray, class_scores: np.ndarray | None = None) -> None:
        """Score one frame's map (normalised to [0, 1], at the map size) and, if given, its class scores."""
        i = self.split.index_of(image_id)
        _, u8 = quantize_scoremap(score_map, image_id)
        h, w = u8.shape
        gt = rescale_boxes(self.split.boxes[i], tuple(self.split.sizes[i]), (w, h))
        if len(gt):
            boxes, _ = boxes_at_cuts(u8, cuts_for_thresholds(u8, self.thresholds), gt)
            self.hits[i] = box_iou(boxes, gt).max(axis=1) >= self.iou
        if class_scores is not None:
            self.classified[i] = int(np.argmax(class_scores)) == int(self.split.labels[i])
        self.seen[i] = True

    def _rows(self) -> np.ndarray:
        return np.flatnonzero(self.seen & np.array([len(b) > 0 for b in self.split.boxes]))

    def box_accuracy(self) -> dict[int, np.ndarray]:
        """Class index -> BoxAcc_c at every threshold (%), for the classes with scored frames."""
        rows = self._rows()
        labels = self.split.labels[rows]
        return {int(c): 100.0 * self.hits[rows[labels == c]].mean(axis=0) for c in np.unique(labels)}

    def pooled_threshold(self) -> tuple[float, float]:
        """The threshold of best BoxAcc over all scored frames pooled (the first on ties) and that BoxAcc."""
        rows = self._rows()
        if not len(rows):
            return float("nan"), float("nan")
        accuracy = 100.0 * self.hits[rows].mean(axis=0)
        best = int(np.argmax(accuracy))
        return float(self.thresholds[best]), float(accuracy[best])

    def compute(self, fixed_threshold: float | None = None) -> dict:
        """CorLoc per class (test-oracle threshold per class) and its mean, CL, and, with ``fixed_threshold``,
        the CorLoc at that one threshold (``CorLoc@tau``)."""
        per_class = self.box_accuracy()
        names = {c: self.class_names[c] for c in per_class}
        oracle = {names[c]: float(acc.max()) for c, acc in per_class.items()}
        result = {
            "CorLoc": float(np.mean(list(oracle.values()))) if oracle else float("nan"),
            "CorLoc_per_class": oracle,
            "CorLoc_thresholds": {names[c]: float(self.thresholds[int(np.argmax(acc))]) for c, acc in per_class.items()},
            "CL": 100.0 * float(self.classified[self.seen].mean()) if self.seen.any() else float("nan"),
            "frames": int(len(self._rows())),
            "iou": self.iou,
        }
        if fixed_threshold is not None:
            j = int(np.argmin(np.abs(self.thresholds - fixed_threshold)))
            fixed = {names[c]: float(acc[j]) for c, acc in per_class.items()}
            result["CorLoc@tau"] = float(np.mean(list(fixed.values()))) if fixed else float("nan")
            result["CorLoc@tau_per_class"] = fixed
            result["tau"] = float(self.thresholds[j])
        return result
