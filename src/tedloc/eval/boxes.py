"""Boxes for the WSOL evaluation: GT rescaling, IoU, and boxes from thresholded score maps.

Conventions of wsolevaluation, kept exactly:

- GT boxes are rescaled to the map's size by ``int(x * map_w / image_w)`` (float multiply,
  then divide, then truncate), each coordinate separately.
- A foreground pixel at cut ``c`` is ``u8 > c`` with ``u8 = floor(255 * s)``; the cut of
  threshold ``t`` is ``int(t * max(u8))``.
- Regions are OpenCV contours (``RETR_TREE``: outer borders *and* hole borders, 8-connected
  foreground). A contour's box is ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` from
  ``cv2.boundingRect``: an exclusive right/bottom end clipped to the map, later scored as
  inclusive. No contour gives the box ``(0, 0, 0, 0)``.
- Single-box mode keeps the contour of largest ``cv2.contourArea`` (first in OpenCV's order on
  ties); multi-box mode keeps all of them.
- IoU treats boxes as inclusive: ``(x1 - x0 + 1) * (y1 - y0 + 1)``.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

try:  # the C kernel is optional: without a compiler the contour search below is used
    from tedloc.eval._boxkernel import box_kernel as _box_kernel
except ImportError:  # pragma: no cover - depends on the build
    _box_kernel = None

__all__ = [
    "rescale_boxes", "box_iou", "box_overlaps", "iou_from_overlaps", "boxes_at_cut", "cuts_for_thresholds",
    "boxes_at_cuts",
    "BOX_BACKENDS", "default_backend", "EMPTY_BOX",
]

EMPTY_BOX = (0, 0, 0, 0)
_KERNEL_MAX_SIDE = 32767  # the C kernel's limit on map height and width; larger maps use OpenCV
_KERNEL_MAX_PIXELS = 1 << 26  # and on pixels (it keeps 4 bytes per pixel): 8192 x 8192 maps and beyond use OpenCV


def rescale_boxes(boxes: np.ndarray, image_size: tuple[int, int], map_size: tuple[int, int]) -> np.ndarray:
    """Rescale inclusive boxes from the image ``(width, height)`` to the map ``(width, height)``."""
    w, h = (float(v) for v in image_size)
    mw, mh = (float(v) for v in map_size)
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4).tolist():
        out.append((int(float(x0) * mw / w), int(float(y0) * mh / h), int(float(x1) * mw / w), int(float(y1) * mh / h)))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def box_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection (A, B), area of ``a`` (A, 1) and area of ``b`` (1, B) of all pairs of inclusive boxes, int64."""
    a = np.asarray(a, dtype=np.int64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.int64).reshape(1, -1, 4)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return iw * ih, area_a, area_b


def iou_from_overlaps(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """IoU from :func:`box_overlaps`' output, float64; a non-positive union gives 0."""
    union = area_a + area_b - inter
    if (union > 0).all():
        return inter / union
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of all pairs of inclusive boxes, float64 (A, B); a non-positive union gives 0."""
    return iou_from_overlaps(*box_overlaps(a, b))


def cuts_for_thresholds(u8: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Integer cuts ``int(t * max(u8))`` of each threshold (float64 product, truncated)."""
    return (np.asarray(thresholds, dtype=np.float64) * float(u8.max())).astype(np.int64)


def boxes_at_cut(u8: np.ndarray, cut: int) -> tuple[np.ndarray, int]:
    """All contour boxes of ``u8 > cut`` (``(n, 4)`` int64) and the index of the largest contour.

    With no foreground the result is ``[(0, 0, 0, 0)]`` and index 0, as in the reference.
    """
    height, width = u8.shape
    mask = (u8 > cut).astype(np.uint8)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.array([EMPTY_BOX], dtype=np.int64), 0
    boxes = np.empty((len(contours), 4), dtype=np.int64)
    best, best_area = 0, -1.0
    for i, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        boxes[i] = (x, y, min(x + w, width - 1), min(y + h, height - 1))
        area = cv2.contourArea(contour)
        if area > best_area:  # strict: the first contour wins ties, like max()
            best, best_area = i, area
    return boxes, best


def largest_contour_box(u8: np.ndarray, cut: int) -> np.ndarray:
    """The single-box rule alone: the box of the outer contour of largest area (first on ties).

    Hole contours and contours inside holes are never the largest (they lie inside their outer
    contour), so ``RETR_EXTERNAL`` finds the same box as ``RETR_TREE`` with less work.
    """
    height, width = u8.shape
    contours = cv2.findContours((u8 > cut).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.array(EMPTY_BOX, dtype=np.int64)
    areas = [cv2.contourArea(c) for c in contours]
    x, y, w, h = cv2.boundingRect(contours[int(np.argmax(areas))])  # argmax: the first maximum
    return np.array((x, y, min(x + w, width - 1), min(y + h, height - 1)), dtype=np.int64)


def _boxes_at_cuts_contours(
    u8: np.ndarray, cuts: np.ndarray, gt_boxes: np.ndarray, deltas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reference algorithm: one contour search per distinct cut (exact best IoUs)."""
    if len(cuts) > 1 and (np.diff(cuts) < 0).any():
        raise ValueError("cuts must be non-decreasing")
    uniq, inverse = np.unique(cuts, return_inverse=True)
    v1 = np.empty((len(uniq), 4), dtype=np.int64)
    v2 = np.empty(len(uniq))
    for j, cut in enumerate(uniq):
        boxes, best = boxes_at_cut(u8, int(cut))
        v1[j] = boxes[best]
        v2[j] = box_iou(boxes, gt_boxes).max()
    return v1[inverse], v2[inverse]


def _boxes_at_cuts_kernel(
    u8: np.ndarray, cuts: np.ndarray, gt_boxes: np.ndarray, deltas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All cuts at once in the C kernel (runs and union-find; it checks the cuts' order); the same results as the
    contour search."""
    if max(u8.shape) > _KERNEL_MAX_SIDE or u8.size > _KERNEL_MAX_PIXELS:
        return _boxes_at_cuts_contours(u8, cuts, gt_boxes, deltas)
    levels = np.ascontiguousarray(u8, dtype=np.uint8)
    cuts = np.ascontiguousarray(cuts, dtype=np.int64)
    gt = np.ascontiguousarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    v2 = np.empty(len(cuts), dtype=np.float64)
    v1 = np.empty((len(cuts), 4), dtype=np.int64)
    _box_kernel(levels, levels.shape[0], levels.shape[1], cuts, gt, np.ascontiguousarray(deltas, dtype=np.float64),
                v2, v1)
    return v1, v2


# name -> fn(u8, non-decreasing cuts, GT boxes, ascending IoU thresholds) -> (single box per cut, best multi-box IoU
# per cut: exact, or, for the kernel, a value on the same side of every IoU threshold as the exact one)
BOX_BACKENDS: dict[str, Callable] = {"contours": _boxes_at_cuts_contours}
if _box_kernel is not None:
    BOX_BACKENDS["unionfind"] = _boxes_at_cuts_kernel


def default_backend() -> str:
    """``unionfind`` when the C kernel is built, else ``contours``."""
    return "unionfind" if "unionfind" in BOX_BACKENDS else "contours"


def boxes_at_cuts(
    u8: np.ndarray,
    cuts: np.ndarray,
    gt_boxes: np.ndarray,
    backend: str | None = None,
    deltas: tuple[float, ...] = (0.3, 0.5, 0.7),
) -> tuple[np.ndarray, np.ndarray]:
    """Single-contour box and best multi-contour IoU at each of the non-decreasing ``cuts``.

    The multi-contour IoU is only ever compared with the IoU thresholds ``deltas``: backends may
    skip hole contours that cannot change any of those comparisons (the value is then a lower
    bound on the same side of every threshold as the exact one).
    """
    name = backend or default_backend()
    try:
        fn = BOX_BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown box backend {name!r}; available: {', '.join(BOX_BACKENDS)}") from None
    deltas = np.array(sorted({float(d) for d in np.asarray(deltas, dtype=np.float64).reshape(-1)}))
    return fn(u8, np.asarray(cuts, dtype=np.int64), gt_boxes, deltas)
