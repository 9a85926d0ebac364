"""The WSOL evaluator: ``accumulate(image_id, score_map, class_scores)`` in any loop, then ``compute()``.

Threshold modes (how a map becomes a box):

The settings (interval, mode, tau, IoU thresholds) come from an :class:`~tedloc.eval.conventions.EvalProtocol`
(a record or a preset name: ``standard``, ``validation``).

- ``oracle`` (wsolevaluation): every threshold of ``np.arange(0, 1, interval)``; the best one on
  the evaluated split is reported (it uses the split's GT boxes: an upper bound).
- ``fixed``: one given threshold ``tau`` (e.g. estimated on another split), applied to every map.
- ``otsu``: each map's own Otsu threshold on its 8-bit quantisation (no threshold to choose).

PxAP does not depend on the mode: it always integrates over the threshold list.

Besides the mode's operating threshold, a ``val_threshold`` (a threshold chosen without the evaluated split's
boxes: a run's, chosen on its validation split) gives GT-known Loc, Top-1/Top-5 Loc and mIoU at that threshold
under their own names (:data:`VAL_THRESHOLD_METRICS`, e.g. ``Top1Loc@val_thr``), beside the oracle ones.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from tedloc.data.dataset import Split
from tedloc.errors import DataError, OptionError
from tedloc.eval.box_metrics import BoxAccumulator, image_box_stats
from tedloc.eval.boxes import cuts_for_thresholds, largest_contour_box, rescale_boxes
from tedloc.eval.conventions import THRESHOLD_MODES, EvalProtocol, eval_protocol
from tedloc.eval.mask_metrics import MaskAccumulator, load_gt_mask
from tedloc.eval.scoremaps import ScoreMapError, check_class_scores, quantize_scoremap, to_uint8

__all__ = ["WSOLEvaluator", "THRESHOLD_MODES", "topk_correct", "otsu_cut", "box_from_map", "VAL_THRESHOLD_METRICS",
           "VAL_THRESHOLD_SUFFIX"]

VAL_THRESHOLD_SUFFIX = "@val_thr"  # metrics at the val threshold: ``Top1Loc@val_thr`` beside ``Top1Loc``
VAL_THRESHOLD_METRICS = tuple(k + VAL_THRESHOLD_SUFFIX for k in ("GTKnownLoc", "Top1Loc", "Top5Loc", "mIoU"))


def otsu_cut(u8: np.ndarray) -> np.ndarray:
    """The per-map Otsu cut of an 8-bit map (as a one-element array of cuts)."""
    if u8.min() == u8.max():
        return np.array([int(u8.max())], dtype=np.int64)  # constant map: no foreground
    level, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.array([int(level)], dtype=np.int64)


def box_from_map(score_map: np.ndarray, threshold: float | str) -> tuple[int, int, int, int]:
    """Box of the largest region of a [0, 1] map at ``threshold`` (or per-map Otsu, ``"otsu"``), by the
    evaluation's rules (the single-contour box; inclusive pixels; ``(0, 0, 0, 0)`` when no region)."""
    u8 = to_uint8(score_map)
    if threshold == "otsu":
        cut = int(otsu_cut(u8)[0])
    else:
        cut = int(cuts_for_thresholds(u8, np.array([float(threshold)]))[0])
    return tuple(int(v) for v in largest_contour_box(u8, cut))


# mode -> (thresholds reported, function u8 -> cuts) of a protocol
_CUTS: dict[str, Callable[[EvalProtocol], tuple]] = {
    "oracle": lambda protocol: (protocol.thresholds(), None),
    "fixed": lambda protocol: (np.array([float(protocol.tau)]), None),
    "otsu": lambda protocol: (np.array([np.nan]), otsu_cut),
}


def topk_correct(class_scores: np.ndarray, label: int, k: int) -> bool:
    """True if fewer than ``k`` classes score strictly higher than ``label`` (ties count as correct).

    A NaN score (a diverged model) ranks below everything: a NaN true-class score is never correct.
    """
    scores = np.asarray(class_scores, dtype=np.float64).reshape(-1)
    if not 0 <= label < len(scores):
        raise ValueError(f"label {label} outside the {len(scores)} class scores")
    if np.isnan(scores[label]):
        return False
    return int((scores > scores[label]).sum()) < k


class WSOLEvaluator:
    """Accumulates box and mask metrics over the score maps of a split.

    Args:
        split: the evaluated split (GT boxes, sizes, masks, labels).
        protocol: an :class:`~tedloc.eval.conventions.EvalProtocol` or a preset name (default ``standard``):
            the threshold interval, the mode (``oracle``, ``fixed`` or ``otsu``: see the module docstring),
            ``tau`` and the IoU thresholds; ``changes`` (its field names) change it.
        masks: evaluate PxAP; default: when the split has masks.
        boxes: evaluate boxes; default: when the split has boxes.
        backend: box extraction backend (``unionfind``, the C kernel, or ``contours``, OpenCV's
            contour search per threshold); both give identical results.
        num_classes: the number of classes: class scores of another length are refused. Default:
            the length of the first class scores given (pass it: only then is a wrong length that
            every image shares caught).
        val_threshold: a threshold in [0, 1) chosen without this split's boxes (a run's, chosen on its val
            split): GT-known Loc, Top-1/Top-5 Loc and mIoU at it are reported too, as ``GTKnownLoc@val_thr``,
            ``Top1Loc@val_thr``, ``Top5Loc@val_thr``, ``mIoU@val_thr`` (and the threshold as ``val_threshold``).

    CL@1/CL@5 need only class scores; ``compute()`` lists under ``not_computed`` the metrics it
    leaves out, and why (no GT boxes, no GT masks, no class scores).
    """

    def __init__(
        self,
        split: Split,
        protocol: EvalProtocol | str = "standard",
        *,
        masks: bool | None = None,
        boxes: bool | None = None,
        backend: str | None = None,
        num_classes: int | None = None,
        val_threshold: float | None = None,
        **changes,
    ):
        self.protocol = protocol = eval_protocol(protocol, **changes)
        if val_threshold is not None and not 0 <= float(val_threshold) < 1:
            raise OptionError(f"the val threshold must be in [0, 1), got {val_threshold}")
        self.split = split
        self.backend = backend
        self.thresholds, self._cut_fn = _CUTS[protocol.mode](protocol)
        self.boxes = split.has_boxes if boxes is None else boxes
        self.masks = split.has_masks if masks is None else masks
        if not self.boxes and not self.masks:
            raise DataError(f"split {split.name!r} has neither boxes nor masks to evaluate against")
        self.box_acc = BoxAccumulator(len(self.thresholds), protocol.iou_thresholds) if self.boxes else None
        self.mask_acc = MaskAccumulator(protocol.thresholds()) if self.masks else None
        self.val_threshold = None if val_threshold is None else float(val_threshold)
        self.val_acc = (BoxAccumulator(1, protocol.iou_thresholds)
                        if self.boxes and self.val_threshold is not None else None)
        self.num_classes = num_classes
        self._seen: set[int] = set()
        self._cls = np.zeros(3, dtype=np.int64)  # images with class scores, top-1 correct, top-5 correct

    @property
    def mode(self) -> str:
        """The threshold mode (the protocol's)."""
        return self.protocol.mode

    @property
    def interval(self) -> float:
        """The threshold interval (the protocol's)."""
        return self.protocol.interval

    def __len__(self) -> int:
        return len(self._seen)

    def _cuts(self, u8: np.ndarray) -> np.ndarray:
        return cuts_for_thresholds(u8, self.thresholds) if self._cut_fn is None else self._cut_fn(u8)

    def _top_k(self, i: int, image_id: str, class_scores: np.ndarray) -> tuple[bool, bool]:
        """Whether the true class of image ``i`` is top-1 / among the top-5 of its (checked) class scores."""
        scores = check_class_scores(class_scores, self.num_classes, f" for {image_id!r}")
        label = int(self.split.labels[i])
        if label >= len(scores):
            raise ScoreMapError(f"class scores for {image_id!r}: {len(scores)} entries, but its class is "
                                f"{label}")
        self.num_classes = len(scores)
        return topk_correct(scores, label, 1), topk_correct(scores, label, 5)

    def accumulate(self, image_id: str, score_map: np.ndarray, class_scores: np.ndarray | None = None) -> None:
        """Add the score map (H, W) in [0, 1] of ``image_id``; ``class_scores`` (K,) give CL@k, Top-k Loc."""
        try:
            i = self.split.index_of(image_id)
        except KeyError:
            raise ScoreMapError(f"score map for unknown image id {image_id!r} (not in split "
                                f"{self.split.name!r})") from None
        if i in self._seen:
            raise ScoreMapError(f"score map for {image_id!r} accumulated twice")
        s, u8 = quantize_scoremap(score_map, image_id)
        top1, top5 = (None, None) if class_scores is None else self._top_k(i, image_id, class_scores)
        if self.box_acc is not None:
            gt = self.split.boxes[i]
            if len(gt) == 0:
                raise DataError(f"image {image_id!r} has no GT box; box metrics need one per image")
            size = tuple(int(v) for v in self.split.sizes[i])
            if size[0] <= 0:
                raise DataError(f"image {image_id!r} has no size in image_sizes.txt; boxes cannot be rescaled")
            gt_map = rescale_boxes(gt, size, (s.shape[1], s.shape[0]))
            stats = image_box_stats(u8, self._cuts(u8), gt_map, self.backend, self.box_acc.iou_thresholds)
            self.box_acc.add(stats, top1, top5)
            if self.val_acc is not None:  # the same box rules at the one val threshold
                cut = cuts_for_thresholds(u8, np.array([self.val_threshold]))
                self.val_acc.add(image_box_stats(u8, cut, gt_map, self.backend, self.val_acc.iou_thresholds),
                                 top1, top5)
        if self.mask_acc is not None:
            mask_paths, ignore_path = self.split.mask_files(i)
            if not mask_paths:
                raise DataError(f"image {image_id!r} has no GT mask; PxAP needs one per image")
            self.mask_acc.add(s, load_gt_mask(mask_paths, ignore_path, (s.shape[1], s.shape[0])))
        if top1 is not None:
            self._cls += (1, top1, top5)
        self._seen.add(i)

    def state(self) -> dict:
        """The additive sums (picklable, without the split): send them between processes."""
        return {"box": self.box_acc, "mask": self.mask_acc, "seen": set(self._seen), "cls": self._cls.copy(),
                "num_classes": self.num_classes, "thresholds": self.thresholds, "num_images": len(self.split),
                "val": self.val_acc, "val_threshold": self.val_threshold}

    def merge(self, other: "WSOLEvaluator | dict") -> None:
        """Add the sums of another evaluator (or its :meth:`state`) of the same split and settings."""
        state = other.state() if isinstance(other, WSOLEvaluator) else other
        if state["num_images"] != len(self.split):
            raise ValueError("cannot merge evaluators of different splits")
        if not np.array_equal(state["thresholds"], self.thresholds, equal_nan=True):
            raise ValueError("cannot merge evaluators with different thresholds")
        if state.get("val_threshold") != self.val_threshold:
            raise ValueError("cannot merge evaluators with different val thresholds")
        overlap = self._seen & state["seen"]
        if overlap:
            raise ScoreMapError(f"{len(overlap)} images were accumulated twice, e.g. "
                                f"{self.split.image_ids[min(overlap)]!r}")
        if None not in (self.num_classes, state["num_classes"]) and self.num_classes != state["num_classes"]:
            raise ScoreMapError(f"class scores of {self.num_classes} and of {state['num_classes']} entries "
                                f"were given; give one per class for every image")
        self.num_classes = self.num_classes if state["num_classes"] is None else state["num_classes"]
        if self.box_acc is not None:
            self.box_acc.merge(state["box"])
        if self.mask_acc is not None:
            self.mask_acc.merge(state["mask"])
        if self.val_acc is not None:
            self.val_acc.merge(state["val"])
        self._cls += state["cls"]
        self._seen |= state["seen"]

    def missing(self) -> list[str]:
        """Image ids of the split not accumulated yet."""
        return [image_id for j, image_id in enumerate(self.split.image_ids) if j not in self._seen]

    def _classification(self) -> dict:
        """CL@1 and CL@5 (percent) when class scores were given, for every image or none."""
        n, (count, top1, top5) = len(self._seen), (int(v) for v in self._cls)
        if count and count != n:
            raise ScoreMapError(f"class scores were given for {count} of {n} images; "
                                f"give them for all or none")
        return {"CL@1": top1 * 100.0 / n, "CL@5": top5 * 100.0 / n} if count else {}

    def _not_computed(self, with_classes: bool) -> list[str]:
        """Which metrics are left out, and why, one line each."""
        split = f"split {self.split.name!r}"
        notes = []
        if self.box_acc is None:
            why = (f"{split} has no GT boxes (its localization.txt is missing or lists none)"
                   if not self.split.has_boxes else "box evaluation was turned off (boxes=False)")
            notes.append(f"MaxBoxAcc, MaxBoxAccV2, GTKnownLoc, Top1Loc, Top5Loc, mIoU not computed: {why}")
        if self.mask_acc is None:
            why = f"{split} has no GT masks" if not self.split.has_masks else "masks=False"
            notes.append(f"PxAP not computed: {why}")
        if not with_classes:
            which = "CL@1, CL@5" + (", Top1Loc, Top5Loc" if self.box_acc is not None else "")
            notes.append(f"{which} not computed: no class scores were given")
        return notes

    def _at_val_threshold(self, top_k: bool) -> dict:
        """GT-known Loc, mIoU and (``top_k``) Top-1/Top-5 Loc at the val threshold, under their ``@val_thr`` names."""
        at = self.val_acc.compute(np.array([self.val_threshold]), operating_index=0, top_k=top_k)
        out = {"val_threshold": self.val_threshold}
        for key in ("GTKnownLoc", "Top1Loc", "Top5Loc", "mIoU"):
            if key in at:
                out[key + VAL_THRESHOLD_SUFFIX] = at[key]
        return out

    def compute(self) -> dict:
        """All metrics (percent), the operating threshold, the per-threshold curves and, under
        ``not_computed``, the metrics left out and why."""
        out: dict = {"images": len(self._seen), "mode": self.mode, "interval": self.interval,
                     "protocol": self.protocol.to_dict()}
        classification = self._classification()
        curves = {}
        if self.box_acc is not None:
            box = self.box_acc.compute(self.thresholds, top_k=bool(classification))
            curves.update(box.pop("curves"))
            if self.mode == "otsu":
                for key in [k for k in box if k.startswith("threshold")]:
                    box[key] = "otsu"
                curves["thresholds"] = ["otsu"]
            out.update(box)
        if self.val_acc is not None:
            out.update(self._at_val_threshold(bool(classification)))
        if self.mask_acc is not None:
            mask = self.mask_acc.compute()
            curves["pxap"] = mask.pop("curves")
            out.update(mask)
        out.update(classification)
        out["curves"] = curves
        notes = self._not_computed(bool(classification))
        if notes:
            out["not_computed"] = notes
        return out
