"""Run an annotator over a split once: resumable, with progress, then scored against GT where it exists.

Finished boxes are appended to ``FILE.partial`` (flushed line by line); a new call skips the
images already there, so an interrupted run resumes. At the end ``FILE`` (the box file) and
``FILE.json`` (settings and the score against GT) are written atomically and the partial file
is removed. A complete ``FILE`` made with the same settings is reused as it is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tedloc.data import load_dataset
from tedloc.data.images import load_image
from tedloc.errors import TedlocError
from tedloc.protocol.box_files import read_box_file, score_boxes, write_box_file
from tedloc.utils.io import atomic_write_text
from tedloc.utils.progress import progress

__all__ = ["make_pseudo_boxes"]


def _read_partial(path: Path) -> dict[str, np.ndarray]:
    done: dict[str, np.ndarray] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(",")
            if len(parts) == 5:  # a line cut by an interruption is simply redone
                try:
                    done[parts[0]] = np.array([int(v) for v in parts[1:]], dtype=np.int64)
                except ValueError:
                    continue
    return done


def make_pseudo_boxes(data: str | os.PathLike, split_name: str, method: str, run: str | os.PathLike | None,
                      out: str | os.PathLike, clip_model: str | None = None, **options) -> dict:
    """Pseudo-boxes of every image of a split by ``method``; returns the summary written to ``FILE.json``."""
    out = Path(out)
    dataset = load_dataset(data, splits=[split_name])
    split = dataset[split_name]
    settings = {"method": method, "data": str(Path(data).resolve()), "split": split_name,
                "run": str(Path(run).resolve()) if run else None, "clip_model": clip_model, **options}
    summary_path = out.with_name(out.name + ".json")
    if out.exists() and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("settings") == settings:
            return summary
        raise TedlocError(f"{out} exists with other settings ({summary.get('settings')}); choose another --out")
    if method == "clip":
        from tedloc.cams.clip_cam import CLIPCAM
        from tedloc.inference import box_from_map

        if not clip_model:
            raise TedlocError("--method clip needs --clip-model open_clip:<arch>@<tag>")
        clip = CLIPCAM(clip_model, dataset.class_names)

        def annotate(image, label):
            return np.array(box_from_map(clip(image, label), "otsu"), dtype=np.int64)
    else:
        from tedloc.protocol.annotators import create_annotator

        if run is None:
            raise TedlocError(f"--method {method} needs --run (a classifier run from `tedloc pretrain`)")
        annotate = create_annotator(method, run, **options)
    partial = out.with_name(out.name + ".partial")
    done = _read_partial(partial)
    todo = [i for i, image_id in enumerate(split.image_ids) if image_id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", encoding="utf-8") as f:
        for i in progress(todo, desc=f"{method} pseudo-boxes of {split_name}", unit="image"):
            box = annotate(load_image(split.image_path(i)), int(split.labels[i]))
            f.write(f"{split.image_ids[i]},{','.join(str(int(v)) for v in box)}\n")
            f.flush()
            done[split.image_ids[i]] = box
    boxes = {image_id: done[image_id] for image_id in split.image_ids}
    write_box_file(out, boxes)
    summary = {"settings": settings, "images": len(boxes)}
    if split.has_boxes:
        summary["score"] = score_boxes(split, read_box_file(out, split))
    atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    return summary
