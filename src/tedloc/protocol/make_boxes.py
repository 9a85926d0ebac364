"""Run an annotator over a split once: resumable, with progress, then scored against GT where it exists.

Finished boxes are appended to ``FILE.partial`` (flushed line by line), with the settings that make
them in ``FILE.partial.json``; a new call with the same settings skips the images already there, so
an interrupted run resumes, and one with other settings is refused (it would mix boxes of two
methods). At the end ``FILE`` (the box file) and ``FILE.json`` (settings and the score against GT)
are written atomically and the partial files are removed. A complete ``FILE`` made with the same
settings is reused as it is. One process at a time writes ``FILE`` (a lock ``.FILE.lock`` beside it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from tedloc.data import load_dataset
from tedloc.data.images import load_image
from tedloc.errors import TedlocError
from tedloc.protocol.box_files import read_box_file, score_boxes, write_box_file
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import file_lock
from tedloc.utils.progress import progress

__all__ = ["make_pseudo_boxes"]

Annotator = Callable[[object, int], np.ndarray]


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


def _partial_files(out: Path) -> tuple[Path, Path]:
    """``FILE.partial`` (the boxes done) and ``FILE.partial.json`` (the settings that made them)."""
    partial = out.with_name(out.name + ".partial")
    return partial, partial.with_name(partial.name + ".json")


def _resume_partial(out: Path, settings: dict) -> dict[str, np.ndarray]:
    """The boxes of an interrupted run, after checking it had ``settings`` (recorded now for a new run;
    a partial file of a version that recorded none is trusted)."""
    partial, recorded = _partial_files(out)
    if partial.exists() and recorded.exists():
        previous = json.loads(recorded.read_text())
        if not _same_settings(previous, settings):
            raise TedlocError(f"{out}: an interrupted run with other settings ({previous}) left {partial}; "
                              f"resume it with those settings, or delete it")
    atomic_write_text(recorded, json.dumps(settings, indent=1) + "\n")
    return _read_partial(partial)


def _annotate_split(split, annotate: Annotator, done: dict[str, np.ndarray], partial: Path,
                    desc: str) -> dict[str, np.ndarray]:
    """Boxes of every image of ``split``: those in ``done``, the others annotated (appended to ``partial``)."""
    todo = [i for i, image_id in enumerate(split.image_ids) if image_id not in done]
    with open(partial, "a", encoding="utf-8") as f:
        for i in progress(todo, desc=desc, unit="image"):
            box = annotate(load_image(split.image_path(i)), int(split.labels[i]))
            f.write(f"{split.image_ids[i]},{','.join(str(int(v)) for v in box)}\n")
            f.flush()
            done[split.image_ids[i]] = box
    return {image_id: done[image_id] for image_id in split.image_ids}


def _same_settings(a: dict | None, b: dict) -> bool:
    """Settings compared as stored (tuples are lists); ``clip_model: null`` is ignored (older files recorded it
    for every method)."""
    def norm(d: dict) -> dict:
        return {k: v for k, v in json.loads(json.dumps(d)).items() if not (k == "clip_model" and v is None)}

    return a is not None and norm(a) == norm(b)


def make_pseudo_boxes(data: str | os.PathLike, split_name: str, method: str, run: str | os.PathLike | None,
                      out: str | os.PathLike, *, runtime: Runtime, **options) -> dict:
    """Pseudo-boxes of every image of a split by the annotator registered as ``method``
    (:data:`~tedloc.protocol.annotators.ANNOTATORS`), with its ``options`` and the classifier ``run`` if it
    needs one; returns the summary written to ``FILE.json``. ``runtime``: where the networks run (a
    :class:`~tedloc.utils.device.Runtime`; default the CPU)."""
    from tedloc.protocol.annotators import AnnotatorContext, create_annotator

    out = Path(out)
    dataset = load_dataset(data, splits=[split_name])
    split = dataset[split_name]
    settings = {"method": method, "data": str(Path(data).resolve()), "split": split_name,
                "run": str(Path(run).resolve()) if run else None, **options}
    summary_path = out.with_name(out.name + ".json")
    with file_lock(out):
        if out.exists() and summary_path.exists():
            summary = json.loads(summary_path.read_text())
            if _same_settings(summary.get("settings"), settings):
                return summary
            raise TedlocError(f"{out} exists with other settings ({summary.get('settings')}); "
                              f"choose another --out")
        context = AnnotatorContext(dataset.class_names, str(run) if run else None, runtime=runtime)
        annotate = create_annotator(method, context, **options)
        done = _resume_partial(out, settings)
        desc = f"{method} pseudo-boxes of {split_name}"
        boxes = _annotate_split(split, annotate, done, _partial_files(out)[0], desc)
        write_box_file(out, boxes)
        summary = {"settings": settings, "images": len(boxes)}
        if split.has_boxes:
            summary["score"] = score_boxes(split, read_box_file(out, split))
        atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
        for path in _partial_files(out):
            path.unlink(missing_ok=True)
        return summary
