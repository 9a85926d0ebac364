"""Pseudo-box files and their quality against GT boxes.

A box file (:mod:`tedloc.data.box_files`) is a ``localization.txt`` of the wsolevaluation format with one
box per image: ``<image_id>,<x0>,<y0>,<x1>,<y1>`` in the image's own pixels, inclusive.

Scoring conventions (``score_boxes``): IoU as in wsolevaluation (inclusive pixel boxes, areas
``(x1 - x0 + 1) * (y1 - y0 + 1)``), the best IoU over an image's GT boxes, computed in the
original image coordinates (``rescale=None``) or after rescaling both boxes to a square of
``rescale`` pixels with the evaluation's rule (the thesis' code scores at 224x224).
"""
from __future__ import annotations

import numpy as np

from tedloc.data.box_files import read_box_file, split_with_box_file, write_box_file
from tedloc.data.dataset import Split
from tedloc.errors import DataError, OptionError
from tedloc.eval.boxes import box_iou, rescale_boxes

__all__ = ["read_box_file", "write_box_file", "score_boxes", "box_ious", "split_with_box_file", "supervision_sets"]


def box_ious(split: Split, boxes: dict[str, np.ndarray], rescale: int | None = None) -> np.ndarray:
    """Per image of ``split`` (in its order): the best IoU of its box with its GT boxes."""
    out = np.empty(len(split))
    for i, image_id in enumerate(split.image_ids):
        gt = split.boxes[i]
        if len(gt) == 0:
            raise DataError(f"image {image_id!r} has no GT box in split {split.name!r}")
        box = boxes[image_id][None]
        if rescale is not None:
            size = tuple(int(v) for v in split.sizes[i])
            gt = rescale_boxes(gt, size, (rescale, rescale))
            box = rescale_boxes(box, size, (rescale, rescale))
        out[i] = box_iou(box, gt).max()
    return out


def score_boxes(split: Split, boxes: dict[str, np.ndarray], rescale: int | None = None) -> dict:
    """Mean IoU (in %) and the share of images at IoU >= 0.3 / 0.5 / 0.7 (in %)."""
    ious = box_ious(split, boxes, rescale)
    return {"images": len(ious), "mIoU": 100.0 * float(ious.mean()),
            **{f"IoU>={t}": 100.0 * float((ious >= t / 100).mean()) for t in (30, 50, 70)},
            "rescale": rescale}


def supervision_sets(val: Split, specs: list[str] | None) -> dict[str, Split]:
    """``GT`` (the val split, when it has boxes) and one set per ``NAME=FILE`` spec (the val split with that box
    file's boxes)."""
    sets = {"GT": val} if val.has_boxes else {}
    for spec in specs or []:
        name, _, path = spec.partition("=")
        if not path:
            raise OptionError(f"--pseudo-boxes takes NAME=FILE, got {spec!r}")
        sets[name] = split_with_box_file(val, path)
    return sets
