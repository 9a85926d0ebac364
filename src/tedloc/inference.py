"""Label-free inference: image in, top-k classes, localization map and box out.

    from tedloc import Localizer
    localizer = Localizer.from_run("runs/tedloc")
    for p in localizer(["bird.jpg", "car.png"]):
        print(p.top_classes[0], p.box)

The map is computed at the model's input size (the image resized to a square, as in
evaluation), resized back to the image's own size (bicubic) and min-max normalised; the box is
the bounding box of the largest connected region of ``map >= threshold`` (the single-contour
rule of the evaluation), in the image's pixels, inclusive. The threshold is the one stored in
the run (chosen on validation data at training time), a fixed value, or ``"otsu"`` per image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from tedloc.data.images import load_image
from tedloc.data.transforms import EvalTransform, to_normalized_tensor
from tedloc.errors import TedlocError
from tedloc.eval.boxes import cuts_for_thresholds, largest_contour_box
from tedloc.eval.evaluator import otsu_cut
from tedloc.eval.scoremaps import normalize_scoremap, to_uint8

__all__ = ["Localizer", "Prediction", "box_from_map"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclass
class Prediction:
    """What :class:`Localizer` returns for one image."""

    source: str  # the file, or "<image i>" for in-memory images
    size: tuple[int, int]  # (width, height) of the image
    top_classes: list[tuple[int, str, float]]  # (index, name, probability), best first
    scores: np.ndarray  # (K,) class probabilities
    map: np.ndarray  # (height, width) float32 in [0, 1]
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in image pixels, inclusive
    threshold: float | str  # the threshold used, or "otsu"

    @property
    def label(self) -> str:
        return self.top_classes[0][1]

    def to_dict(self) -> dict:
        """A JSON-friendly record (without the map)."""
        return {"image": self.source, "width": self.size[0], "height": self.size[1],
                "top_classes": [{"index": i, "name": n, "score": s} for i, n, s in self.top_classes],
                "box": list(self.box), "threshold": self.threshold}


def box_from_map(score_map: np.ndarray, threshold: float | str) -> tuple[int, int, int, int]:
    """Box of the largest region of a [0, 1] map at ``threshold`` (or per-map Otsu), by the evaluation's rules."""
    u8 = to_uint8(score_map)
    if threshold == "otsu":
        cut = int(otsu_cut(u8)[0])
    else:
        cut = int(cuts_for_thresholds(u8, np.array([float(threshold)]))[0])
    return tuple(int(v) for v in largest_contour_box(u8, cut))


def _as_image(image: ImageInput, i: int) -> tuple[Image.Image, str]:
    if isinstance(image, Image.Image):
        return image.convert("RGB"), f"<image {i}>"
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise TedlocError(f"image {i}: arrays must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return Image.fromarray(image), f"<image {i}>"
    path = Path(image)
    if not path.is_file():
        raise TedlocError(f"{path}: no such image file")
    try:
        return load_image(path), str(path)
    except Exception as exc:  # PIL raises many types for broken files
        raise TedlocError(f"{path}: cannot read the image ({exc})") from None


class Localizer:
    """A trained WSOL model ready for images: class, map and box, no label needed.

    Args:
        model: a :class:`~tedloc.methods.LocalizationModel` (e.g. from :func:`tedloc.methods.load_model`).
        threshold: map threshold in [0, 1], or ``"otsu"``.
        topk: number of classes to report.
    """

    def __init__(self, model, threshold: float | str, topk: int = 5, batch_size: int = 32):
        if threshold != "otsu" and not 0.0 <= float(threshold) < 1.0:
            raise TedlocError(f"threshold must be in [0, 1) or 'otsu', got {threshold!r}")
        self.model = model
        self.threshold = threshold if threshold == "otsu" else float(threshold)
        self.topk = max(1, min(int(topk), len(model.class_names)))
        self.batch_size = batch_size
        self.transform = EvalTransform(model.input_size)

    @classmethod
    def from_run(cls, run: str | os.PathLike, threshold: float | str | None = None, map_kind: str | None = None,
                 topk: int = 5) -> "Localizer":
        """Load a run folder; ``threshold`` defaults to the one stored in the run.

        ``map_kind`` picks among the maps a method offers (TeD-Loc: ``g``, its patch classifier, the
        default; ``class``: <z_p, t_c> of the predicted class).
        """
        import json

        from tedloc.methods import load_model

        model = load_model(run)
        if map_kind is not None:
            kinds = getattr(model, "map_kinds", ("default",))
            if map_kind not in kinds:
                raise TedlocError(f"{run}: map kind {map_kind!r} not offered; choose from {', '.join(kinds)}")
            model.map_kind = map_kind
        if threshold is None:
            threshold = json.loads((Path(run) / "model.json").read_text()).get("threshold")
            if threshold is None:
                raise TedlocError(f"{run} stores no map threshold: pass one (e.g. 0.3, or 'otsu'), or store the "
                                  f"validation one with `tedloc evaluate --run {run} --data DIR --split val "
                                  f"--save-threshold`")
        return cls(model, threshold, topk)

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[Prediction]:
        """Predict for one image or a list of images (paths, PIL images or (H, W, 3) uint8 arrays)."""
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        results: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            loaded = [_as_image(im, start + j) for j, im in enumerate(images[start:start + self.batch_size])]
            batch = torch.stack([to_normalized_tensor(self.transform.view(im.size).image(im), self.model.mean,
                                                      self.model.std) for im, _ in loaded])
            with torch.no_grad():
                scores, maps = self.model.predict(batch)
            scores = scores.double().cpu().numpy()
            maps = maps.double().cpu().numpy()
            for (image, source), s, m in zip(loaded, scores, maps):
                full = normalize_scoremap(m, image.size)
                order = np.argsort(-s, kind="stable")[:self.topk]
                top = [(int(k), self.class_names[k], float(s[k])) for k in order]
                results.append(Prediction(source, image.size, top, s, full.astype(np.float32),
                                          box_from_map(full, self.threshold), self.threshold))
        return results
