"""Box files: one box per image, ``<image_id>,<x0>,<y0>,<x1>,<y1>`` (a ``localization.txt`` of the
wsolevaluation format, in the image's own pixels, inclusive): the thesis' pseudo-boxes
(``wsol_model_selection``) and those of ``tedloc pseudo-boxes``. Read, written, and put in place of a
split's GT boxes (model selection on val pseudo-boxes).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tedloc.data.dataset import Split
from tedloc.data.text_files import read_utf8
from tedloc.errors import DataError, Problem
from tedloc.utils.io import atomic_write_text

__all__ = ["read_box_file", "write_box_file", "split_with_box_file"]


def read_box_file(path: str | os.PathLike, split: Split | None = None) -> dict[str, np.ndarray]:
    """image id -> box (4,) int64; with ``split``, every image of the split must have exactly one box.

    Every problem (malformed line, negative or inverted box, duplicate id, unknown or missing
    image) is collected and raised as one :class:`DataError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such box file", path)
    problems: list[Problem] = []
    boxes: dict[str, np.ndarray] = {}
    lines = read_utf8(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    known = set(split.image_ids) if split is not None else None
    for number, line in enumerate(lines, start=1):
        parts = line.rstrip("\r").split(",")
        if len(parts) != 5:
            problems.append(Problem(f"expected image_id,x0,y0,x1,y1, got {line!r}", str(path), number))
            continue
        image_id = parts[0]
        try:
            box = np.array([int(v) for v in parts[1:]], dtype=np.int64)
        except ValueError:
            problems.append(Problem(f"box coordinates must be integers, got {parts[1:]}", str(path), number))
            continue
        if (box < 0).any() or box[2] < box[0] or box[3] < box[1]:
            problems.append(Problem(f"invalid box {box.tolist()} (need 0 <= x0 <= x1, 0 <= y0 <= y1)", str(path),
                                    number))
            continue
        if image_id in boxes:
            problems.append(Problem(f"second box for {image_id!r} (one box per image)", str(path), number))
            continue
        if known is not None and image_id not in known:
            problems.append(Problem(f"image {image_id!r} is not in split {split.name!r}", str(path), number))
            continue
        boxes[image_id] = box
    if split is not None:
        missing = [i for i in split.image_ids if i not in boxes]
        if missing:
            problems.append(Problem(f"{len(missing)} images of split {split.name!r} have no box, e.g. "
                                    f"{missing[0]!r}", str(path)))
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{len(problems)} problem(s) in the box file:\n  {shown}{more}")
    return boxes


def write_box_file(path: str | os.PathLike, boxes: dict[str, np.ndarray]) -> None:
    """Write one ``image_id,x0,y0,x1,y1`` line per image (atomically)."""
    atomic_write_text(path, "".join(f"{k},{','.join(str(int(v)) for v in b)}\n" for k, b in boxes.items()))


def split_with_box_file(split: Split, path: str | os.PathLike) -> Split:
    """``split`` with the boxes of a box file (one per image) in place of its GT boxes."""
    boxes = read_box_file(path, split)
    return split.with_boxes([boxes[i][None] for i in split.image_ids])
