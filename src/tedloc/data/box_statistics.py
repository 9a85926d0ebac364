"""Where and how large a split's objects are: the largest GT box of each image, as a fraction of its image.

Per image: ``area`` (box area / image area), ``dx`` and ``dy`` (the box centre's offset from the image centre,
in units of the image's width and height, right and down positive) and ``offset`` (their Euclidean norm). Boxes
use inclusive pixel coordinates, as every tedloc split: a box ``(x0, y0, x1, y1)`` spans ``x1 - x0 + 1`` pixels.
``tedloc data box-stats DIR`` prints their quantiles; the synthetic benchmark's ``placement`` follows them.
"""
from __future__ import annotations

import numpy as np

from tedloc.data.dataset import Split
from tedloc.errors import DataError

__all__ = ["box_geometry", "box_statistics", "QUANTILES"]

QUANTILES = (0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
             0.95, 0.99)


def box_geometry(split: Split) -> dict[str, np.ndarray]:
    """``area``, ``dx``, ``dy``, ``offset`` (one per image) of the largest GT box of each image of ``split``."""
    if not split.has_boxes:
        raise DataError(f"split {split.name!r} has no GT boxes")
    rows = []
    for image_id, (w, h), boxes in zip(split.image_ids, split.sizes, split.boxes):
        boxes = boxes.astype(np.float64)  # (n, 4), as every Split holds them
        if len(boxes) == 0:
            raise DataError(f"image {image_id!r} of split {split.name!r} has no GT box")
        widths, heights = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        k = int(np.argmax(widths * heights))
        x0, y0, x1, y1 = boxes[k]
        rows.append((widths[k] * heights[k] / (w * h), (x0 + x1 + 1) / (2 * w) - 0.5, (y0 + y1 + 1) / (2 * h) - 0.5))
    area, dx, dy = np.array(rows, dtype=np.float64).T
    return {"area": area, "dx": dx, "dy": dy, "offset": np.hypot(dx, dy)}


def box_statistics(split: Split, quantiles: tuple[float, ...] = QUANTILES) -> dict:
    """``images``, ``boxes_per_image`` and, for each of :func:`box_geometry`'s values, its ``mean``, ``std`` and
    ``quantiles`` (``{q: value}``)."""
    geometry = box_geometry(split)
    out: dict = {"split": split.name, "images": len(split),
                 "boxes_per_image": split.num_boxes / len(split)}
    for name, values in geometry.items():
        out[name] = {"mean": float(values.mean()), "std": float(values.std()),
                     "quantiles": {str(q): float(v) for q, v in zip(quantiles, np.quantile(values, quantiles))}}
    return out
