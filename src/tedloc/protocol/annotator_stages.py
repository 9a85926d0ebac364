"""How good each stage of a pseudo-box annotator is (thesis Table 4.5) and its CAM's pointing game.

For every image of a split with GT boxes: the box after each stage of a proposal annotator's chain
(:meth:`~tedloc.protocol.annotators.ProposalAnnotator.stages`: top box, pointing game alone,
pointing game within the top 20 %, final), the best proposal by IoU with the GT (the upper bound
of any selection) and whether the peak of the true-class map lies in a GT box (pointing-game
accuracy). Annotators without proposals (``cam``, ``clip``) give their final box and the pointing game.
IoU as :func:`~tedloc.protocol.box_files.score_boxes` (original pixels, best over the GT boxes).
"""
from __future__ import annotations

import os

import numpy as np

from tedloc.data import load_dataset
from tedloc.data.images import load_image
from tedloc.errors import DataError
from tedloc.eval.boxes import box_iou
from tedloc.utils.device import Runtime
from tedloc.utils.progress import progress

__all__ = ["annotator_stages", "format_stages"]


def annotator_stages(data: str | os.PathLike, split_name: str, method: str, run: str | os.PathLike | None = None,
                     *, runtime: Runtime, limit: int | None = None, **options) -> dict:
    """Per stage: mIoU and the share of IoU >= 0.3/0.5/0.7 (%) over the first ``limit`` images (all by
    default) of ``split_name``; ``pointing_game``: % of images whose map peak is in a GT box."""
    from tedloc.protocol.annotators import AnnotatorContext, ProposalAnnotator, _box_contains, create_annotator

    dataset = load_dataset(data, splits=[split_name])
    split = dataset[split_name]
    if not split.has_boxes:
        raise DataError(f"split {split_name!r} of {data} has no GT boxes: its stages cannot be scored")
    context = AnnotatorContext(dataset.class_names, str(run) if run else None, runtime=runtime)
    annotator = create_annotator(method, context,
                                 **options)
    n = len(split) if limit is None else min(int(limit), len(split))
    ious: dict[str, list[float]] = {}
    hits = []
    for i in progress(range(n), desc=f"{method} stages of {split_name}", unit="image"):
        image, label, gt = load_image(split.image_path(i)), int(split.labels[i]), split.boxes[i]
        if isinstance(annotator, ProposalAnnotator):
            stages, proposals, peak = annotator.stages(image, label)
            stages["upper bound"] = proposals[int(np.argmax(box_iou(proposals, gt).max(axis=1)))]
        else:
            stages, peak = {"final": annotator(image, label)}, annotator.tools.peak(image, label)
        for stage, box in stages.items():
            ious.setdefault(stage, []).append(float(box_iou(np.asarray(box)[None], gt).max()))
        hits.append(bool(_box_contains(np.asarray(gt).reshape(-1, 4), peak).any()))
    out: dict = {"method": method, "split": split_name, "images": n, "stages": {}}
    for stage, values in ious.items():
        v = np.array(values)
        out["stages"][stage] = {"mIoU": 100.0 * float(v.mean()),
                                **{f"IoU>={t}": 100.0 * float((v >= t / 100).mean()) for t in (30, 50, 70)}}
    out["pointing_game"] = 100.0 * float(np.mean(hits))
    return out


def format_stages(result: dict) -> str:
    """A Markdown table: one row per stage (mIoU, IoU >= 0.5), then the pointing-game accuracy."""
    lines = ["| stage | mIoU | IoU>=0.3 | IoU>=0.5 | IoU>=0.7 |", "|---|---|---|---|---|"]
    for stage, s in result["stages"].items():
        lines.append(f"| {stage} | {s['mIoU']:.2f} | {s['IoU>=30']:.2f} | {s['IoU>=50']:.2f} | {s['IoU>=70']:.2f} |")
    lines += ["", f"Pointing game (peak of the true-class map inside a GT box): {result['pointing_game']:.2f} % of "
                  f"{result['images']} {result['split']} images ({result['method']})."]
    return "\n".join(lines)
