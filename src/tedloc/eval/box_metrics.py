"""Box metrics as sums over images: MaxBoxAcc (V1), MaxBoxAccV2, mIoU, Top-1/Top-5 Loc, error analysis.

Every quantity is a count or a sum per CAM threshold, so accumulators of several processes add
up exactly (:meth:`BoxAccumulator.merge`), and nothing per image is kept in memory.

Definitions (the reference's for MaxBoxAcc and MaxBoxAccV2, ours for the rest; see docs/EVALUATION.md):

- **MaxBoxAcc** (V1, CVPR 2020): one box per map, the largest contour; accuracy at IoU >= 0.5,
  maximised over thresholds. ``MaxBoxAccV1@d`` for the other IoU thresholds.
- **MaxBoxAcc@d** and **MaxBoxAccV2**: every contour is a candidate box (an image is correct if
  any of them reaches IoU >= d/100 with any GT box); V2 is the mean over d in {30, 50, 70},
  each d with its own best threshold.
- The **operating threshold** is the one maximising MaxBoxAcc (V1 at IoU 50; the lowest on
  ties) in oracle mode, or the given one. At it, with the single box: **GT-known Loc** (IoU >= 0.5
  with any GT box), **Top-1 Loc** (and top-1 class correct), **Top-5 Loc** (and the true class
  in the top 5), **mIoU** (mean best IoU), and the **error analysis** of the failures.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tedloc.errors import OptionError
from tedloc.eval.boxes import box_overlaps, boxes_at_cuts, iou_from_overlaps

try:  # the same per-box statistics in C, without a dozen small numpy calls per image
    from tedloc.eval._boxkernel import single_box_stats as _single_box_stats_c
except ImportError:  # pragma: no cover - depends on the build
    _single_box_stats_c = None

__all__ = ["BoxAccumulator", "ImageBoxStats", "image_box_stats", "ERROR_KINDS"]

ERROR_KINDS = ("MIns", "LPE", "LME", "other")
# IoU sums are kept in fixed point (integers), so that sums over shards and processes are exact and
# independent of the order of the images; the resolution (2**-40 per image) is far below any
# reported digit.
_IOU_SCALE = float(2 ** 40)
_BATCH = 64  # images summed together by BoxAccumulator


@dataclass
class ImageBoxStats:
    """Per-threshold results of one image: best IoUs and the error kind of the single box."""

    v1_iou: np.ndarray  # (T,) best IoU of the largest-contour box with any GT box
    v2_iou: np.ndarray  # (T,) best IoU of any contour box with any GT box, exact as far as the IoU thresholds tell
    error_kind: np.ndarray  # (T,) index into ERROR_KINDS of the single box (meaningful where IoU < 0.5)


def _error_kinds(inter: np.ndarray, area_pred: np.ndarray, area_gt: np.ndarray) -> np.ndarray:
    """Kind of each failed single box (rows: boxes, columns: GT boxes); MIns > LPE > LME > other."""
    iog = inter / area_gt
    iop = inter / area_pred
    kind = np.full(len(inter), 3, dtype=np.int64)
    kind[iog.max(1) > 0.7] = 2
    kind[iop.max(1) > 0.5] = 1
    if inter.shape[1] > 1:
        kind[(iog > 0.3).sum(1) >= 2] = 0
    return kind


def single_box_stats_numpy(boxes: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU with any GT box (float64) and error kind (index into ERROR_KINDS) of each box: the definition."""
    inter, area_p, area_g = box_overlaps(boxes, gt_boxes)
    return iou_from_overlaps(inter, area_p, area_g).max(1), _error_kinds(inter, area_p, area_g)


def single_box_stats(boxes: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`single_box_stats_numpy`, computed in C when the kernel is built (identical values, tested)."""
    if _single_box_stats_c is None:
        return single_box_stats_numpy(boxes, gt_boxes)
    boxes = np.ascontiguousarray(boxes, dtype=np.int64).reshape(-1, 4)
    iou = np.empty(len(boxes), dtype=np.float64)
    kind = np.empty(len(boxes), dtype=np.int64)
    _single_box_stats_c(boxes, np.ascontiguousarray(gt_boxes, dtype=np.int64).reshape(-1, 4), iou, kind)
    return iou, kind


def image_box_stats(
    u8: np.ndarray, cuts: np.ndarray, gt_boxes: np.ndarray, backend: str | None = None,
    iou_thresholds: tuple[int, ...] = (30, 50, 70),
) -> ImageBoxStats:
    """Best IoUs at every (non-decreasing) cut of one quantised map."""
    single, v2 = boxes_at_cuts(u8, cuts, gt_boxes, backend, iou_deltas(iou_thresholds))
    v1, kinds = single_box_stats(single, gt_boxes)
    return ImageBoxStats(v1, v2, kinds)


def iou_deltas(iou_thresholds: tuple[int, ...]) -> np.ndarray:
    """IoU thresholds in percent as the fractions every IoU is compared with."""
    return np.asarray(iou_thresholds, dtype=np.float64) / 100.0


@dataclass
class BoxAccumulator:
    """Sums over images of the per-threshold box results.

    Args:
        num_thresholds: number of CAM thresholds (columns).
        iou_thresholds: IoU thresholds in percent (default 30, 50, 70).
    """

    num_thresholds: int
    iou_thresholds: tuple[int, ...] = (30, 50, 70)
    count: int = 0
    v1_correct: np.ndarray = field(default=None)
    v2_correct: np.ndarray = field(default=None)
    iou_sum: np.ndarray = field(default=None)
    top1_loc: np.ndarray = field(default=None)
    top5_loc: np.ndarray = field(default=None)
    errors: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        if 50 not in self.iou_thresholds:
            raise OptionError("iou_thresholds must include 50 (MaxBoxAcc is defined at IoU 0.5)")
        t, d = self.num_thresholds, len(self.iou_thresholds)
        z = np.zeros
        self.v1_correct = z((d, t), np.int64) if self.v1_correct is None else self.v1_correct
        self.v2_correct = z((d, t), np.int64) if self.v2_correct is None else self.v2_correct
        self.iou_sum = z(t, np.int64) if self.iou_sum is None else self.iou_sum
        self.top1_loc = z(t, np.int64) if self.top1_loc is None else self.top1_loc
        self.top5_loc = z(t, np.int64) if self.top5_loc is None else self.top5_loc
        self.errors = z((len(ERROR_KINDS), t), np.int64) if self.errors is None else self.errors
        self._deltas = iou_deltas(self.iou_thresholds)[:, None]
        self._pending: list[tuple] = []

    def add(self, stats: ImageBoxStats, top1: bool | None = None, top5: bool | None = None) -> None:
        """Add one image; ``top1``/``top5`` say whether its class prediction was right (None: unknown).

        Images are summed in batches (a few numpy calls per batch instead of per image); every
        reader of the sums (:meth:`compute`, :meth:`merge`, pickling) flushes first.
        """
        self._pending.append((stats.v1_iou, stats.v2_iou, stats.error_kind, bool(top1), bool(top5)))
        self.count += 1
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Add the images waiting in the batch to the sums."""
        if not self._pending:
            return
        v1, v2, kind, top1, top5 = zip(*self._pending)
        self._pending = []
        v1, v2, kind = np.stack(v1), np.stack(v2), np.stack(kind)  # (images, thresholds)
        deltas = self._deltas[None]
        self.v1_correct += (v1[:, None, :] >= deltas).sum(0)
        self.v2_correct += (v2[:, None, :] >= deltas).sum(0)
        self.iou_sum += np.rint(v1 * _IOU_SCALE).astype(np.int64).sum(0)
        known = v1 >= 0.5
        failed = ~known
        for j in range(len(ERROR_KINDS)):  # one kind per image and threshold
            self.errors[j] += ((kind == j) & failed).sum(0)
        self.top1_loc += known[np.array(top1)].sum(0)
        self.top5_loc += known[np.array(top5)].sum(0)

    def __getstate__(self) -> dict:
        self.flush()
        return dict(self.__dict__)

    def merge(self, other: "BoxAccumulator") -> None:
        """Add another accumulator's sums (e.g. from another process)."""
        self.flush()
        other.flush()
        for name in ("v1_correct", "v2_correct", "iou_sum", "top1_loc", "top5_loc", "errors"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.count += other.count

    def compute(self, thresholds: np.ndarray, operating_index: int | None = None,
                top_k: bool = False) -> dict:
        """Metrics in percent; ``operating_index`` fixes the threshold (default: the oracle one);
        ``top_k``: Top-1/Top-5 Loc too (every image was added with its ``top1``/``top5``)."""
        self.flush()
        if self.count == 0:
            raise ValueError("no score map was accumulated")
        n = float(self.count)
        d50 = self.iou_thresholds.index(50)
        acc_v1 = self.v1_correct * 100.0 / n
        acc_v2 = self.v2_correct * 100.0 / n
        k = int(np.argmax(acc_v1[d50])) if operating_index is None else int(operating_index)
        out: dict = {
            "MaxBoxAcc": float(acc_v1[d50].max()) if operating_index is None else float(acc_v1[d50, k]),
            "MaxBoxAccV2": float(np.average([acc_v2[i].max() for i in range(len(self.iou_thresholds))])),
        }
        for i, d in enumerate(self.iou_thresholds):
            out[f"MaxBoxAcc@{d}"] = float(acc_v2[i].max())
            out[f"MaxBoxAccV1@{d}"] = float(acc_v1[i].max())
            out[f"threshold@{d}"] = float(thresholds[int(np.argmax(acc_v2[i]))])
        out["threshold"] = float(thresholds[k])
        out["GTKnownLoc"] = float(acc_v1[d50, k])
        out["mIoU"] = float(self.iou_sum[k] / _IOU_SCALE * 100.0 / n)
        failures = self.errors[:, k]
        for j, kind in enumerate(ERROR_KINDS):
            out[f"error/{kind}"] = float(failures[j] * 100.0 / n)
        if top_k:
            out["Top1Loc"] = float(self.top1_loc[k] * 100.0 / n)
            out["Top5Loc"] = float(self.top5_loc[k] * 100.0 / n)
        out["curves"] = {
            "thresholds": [float(t) for t in thresholds],
            **{f"BoxAccV1@{d}": acc_v1[i].tolist() for i, d in enumerate(self.iou_thresholds)},
            **{f"BoxAcc@{d}": acc_v2[i].tolist() for i, d in enumerate(self.iou_thresholds)},
            "mIoU": (self.iou_sum / _IOU_SCALE * 100.0 / n).tolist(),
        }
        return out
