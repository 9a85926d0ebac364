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

Large images, in bounded memory:

- Decoding: an image at least ``2 * DECODE_MARGIN`` times the model's input on both sides is
  decoded reduced by an integer factor that keeps at least ``DECODE_MARGIN`` times the input
  (:func:`tedloc.data.images.load_image_reduced`: JPEG at 1/2, 1/4 or 1/8 scale by libjpeg, 8-bit
  PNG a strip at a time, then the mean of f x f blocks), before the usual resize to the input.
  The model sees nearly the input of the full decoding: PIL documents such a pre-reduction (its
  ``reducing_gap``) as indistinguishable from the full resampling in most cases; on a test photo
  the inputs differ by less than 1 grey level on average and the class scores by less than 0.01.
- The map is returned at the image's size up to ``map_max_side`` pixels on its long side, and
  scaled down to that bound beyond (same aspect ratio). The box is found on that map and given in
  the image's pixels, covering every image pixel its map pixels cover: exact to about
  ``image side / map_max_side`` pixels.
- Image files with more than ``max_pixels`` pixels are refused before decoding.

Images within these bounds give the same results as before: the map at the image's size, its box.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image

from tedloc.data.images import MAX_PIXELS, load_image_reduced, reduce_image, to_rgb
from tedloc.errors import DataError, TedlocError
from tedloc.eval.boxes import EMPTY_BOX
from tedloc.eval.evaluator import box_from_map
from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.utils.device import Runtime

__all__ = ["Localizer", "Prediction", "map_size_for", "box_to_image"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
Box = tuple[int, int, int, int]
Loaded = tuple[torch.Tensor, tuple[int, int], str]  # model input, (width, height) of the image, its name
DECODE_MARGIN = 4  # large images are decoded reduced to at least this many times the model's input size
MAP_MAX_SIDE = 1024  # the default bound on the long side of a returned map


@dataclass
class Prediction:
    """What :class:`Localizer` returns for one image."""

    source: str  # the file, or "<image i>" for in-memory images
    size: tuple[int, int]  # (width, height) of the image
    top_classes: list[tuple[int, str, float]]  # (index, name, probability), best first
    scores: np.ndarray  # (K,) class probabilities
    map: np.ndarray  # (h, w) float32 in [0, 1]: the image's (height, width), scaled down beyond map_max_side
    box: Box  # (x0, y0, x1, y1) in image pixels, inclusive
    threshold: float | str  # the threshold used, or "otsu"

    @property
    def label(self) -> str:
        """The name of the top class."""
        return self.top_classes[0][1]

    def to_dict(self) -> dict:
        """A JSON-friendly record (without the map)."""
        return {"image": self.source, "width": self.size[0], "height": self.size[1],
                "top_classes": [{"index": i, "name": n, "score": s} for i, n, s in self.top_classes],
                "box": list(self.box), "threshold": self.threshold}


def map_size_for(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` of the map of an image of ``size``: the same, or scaled down to ``max_side`` pixels."""
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def box_to_image(box: Box, map_size: tuple[int, int], size: tuple[int, int]) -> Box:
    """An inclusive box on a map of ``map_size``, as the pixels of the image (of ``size``) its map pixels cover.

    The same box when the sizes agree; the empty box ``(0, 0, 0, 0)`` (no region) stays empty.
    """
    if tuple(box) == EMPTY_BOX:
        return EMPTY_BOX
    (mw, mh), (w, h) = map_size, size
    x0, y0, x1, y1 = box
    return x0 * w // mw, y0 * h // mh, -(-(x1 + 1) * w // mw) - 1, -(-(y1 + 1) * h // mh) - 1


class Localizer:
    """A trained WSOL model ready for images: class, map and box, no label needed.

    Args:
        model: a :class:`~tedloc.methods.LocalizationModel` (e.g. from :func:`tedloc.methods.load_model`).
        threshold: map threshold in [0, 1], or ``"otsu"``.
        topk: number of classes to report.
        batch_size: images per forward pass.
        max_pixels: image files with more pixels are refused (an error naming the file) before decoding;
            None: no bound. Arrays and PIL images, already in memory, are not checked.
        map_max_side: bound on the long side of the returned maps (see the module docstring); None: the
            image's size always (memory then grows with the image, 8 bytes per pixel while normalising).
    """

    def __init__(self, model, threshold: float | str, topk: int = 5, batch_size: int = 32,
                 max_pixels: int | None = MAX_PIXELS, map_max_side: int | None = MAP_MAX_SIDE, compile: bool = False):
        if threshold != "otsu" and not 0.0 <= float(threshold) < 1.0:
            raise TedlocError(f"threshold must be in [0, 1) or 'otsu', got {threshold!r}")
        for name, bound in (("max_pixels", max_pixels), ("map_max_side", map_max_side)):
            if bound is not None and bound < 1:
                raise TedlocError(f"{name} must be a positive number or None, got {bound!r}")
        self.model = model
        self.threshold = threshold if threshold == "otsu" else float(threshold)
        self.topk = max(1, min(int(topk), len(model.class_names)))
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.map_max_side = map_max_side
        self.decode_size = (DECODE_MARGIN * model.preprocessing.input_size,) * 2
        # torch.compile of the whole label-free forward pass (the model's own device and precision)
        self._forward = torch.compile(model.predict) if compile else model.predict

    @classmethod
    def from_run(cls, run: str | os.PathLike, threshold: float | str | None = None, map_kind: str | None = None,
                 topk: int = 5, runtime: Runtime | None = None, device: str | torch.device = "auto",
                 precision: str = "auto", target_layer: str | None = None, **options: Any) -> "Localizer":
        """Load a run folder; ``threshold`` defaults to the one stored in the run.

        ``map_kind`` picks among the maps a method offers (TeD-Loc: ``g``, its patch classifier, the
        default; ``class``: <z_p, t_c> of the predicted class). ``runtime``: where and how the network runs;
        without one, ``device`` and ``precision`` make it (``auto``: CUDA in bf16 when available, else the
        CPU in fp32). ``target_layer``: the module path of the post-hoc maps (Grad-CAM, Score-CAM, ...).
        ``options``: the other arguments of :class:`Localizer` (``batch_size``, ``max_pixels``,
        ``map_max_side``, ``compile``).
        """
        from tedloc.engine.run_folder import RunFolder
        from tedloc.methods import load_model

        folder = RunFolder(run)
        runtime = runtime if runtime is not None else Runtime.create(device, precision)
        model = load_model(folder, runtime=runtime, map_kind=map_kind, target_layer=target_layer)
        if threshold is None:
            threshold = folder.threshold
            if threshold is None:
                raise TedlocError(f"{run} stores no map threshold: pass one (e.g. 0.3, or 'otsu'), or store the "
                                  f"validation one with `tedloc evaluate --run {run} --data DIR --split val "
                                  f"--save-threshold`")
        return cls(model, threshold, topk, **options)

    @property
    def class_names(self) -> list[str]:
        """The model's class names, by class index."""
        return self.model.class_names

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[Prediction]:
        """Predict for one image or a list of images (paths, PIL images or (H, W, 3) uint8 arrays).

        An image that cannot be read raises its :class:`TedlocError` (one line naming the file) and nothing
        is returned; :meth:`iter_predictions` goes on past such images.
        """
        results = []
        for result in self.iter_predictions(images):
            if isinstance(result, TedlocError):
                raise result
            results.append(result)
        return results

    def iter_predictions(self, images: ImageInput | Sequence[ImageInput]) -> Iterator[Prediction | TedlocError]:
        """One result per image, in order, computed a batch at a time (memory does not grow with the list).

        An image that cannot be read gives its :class:`TedlocError` (one line naming the file) in place of
        its prediction; the other images are predicted.
        """
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        for start in range(0, len(images), self.batch_size):
            loaded = [self._load(image, start + j) for j, image in enumerate(images[start:start + self.batch_size])]
            predicted = iter(self._predict([x for x in loaded if not isinstance(x, TedlocError)]))
            for x in loaded:
                yield x if isinstance(x, TedlocError) else next(predicted)

    def _load(self, image: ImageInput, i: int) -> Loaded | TedlocError:
        """The model's input for one image, with its size and name; or the error saying why it cannot be read."""
        try:
            pil, size, source = self._decode(image, i)
        except TedlocError as e:
            return e
        x = self.model.preprocessing.eval_input(pil)
        return x, size, source

    def _decode(self, image: ImageInput, i: int) -> tuple[Image.Image, tuple[int, int], str]:
        """RGB, reduced if large (see the module docstring), with the image's ``(width, height)`` and its name."""
        if isinstance(image, (Image.Image, np.ndarray)):
            rgb = _in_memory_rgb(image, i)
            return reduce_image(rgb, self.decode_size), rgb.size, f"<image {i}>"
        path = Path(image)
        if not path.is_file():
            raise TedlocError(f"{path}: no such image file")
        reduced, size = load_image_reduced(path, self.decode_size, self.max_pixels)
        return reduced, size, str(path)

    def _predict(self, loaded: list[Loaded]) -> list[Prediction]:
        if not loaded:
            return []
        with torch.no_grad():
            scores, maps = self._forward(torch.stack([x for x, _, _ in loaded]))
        scores = scores.double().cpu().numpy()
        maps = maps.double().cpu().numpy()
        return [self._prediction(source, size, s, m) for (_, size, source), s, m in zip(loaded, scores, maps)]

    def _prediction(self, source: str, size: tuple[int, int], scores: np.ndarray, cam: np.ndarray) -> Prediction:
        """Top classes, the map normalised at its bounded size, and its box in image pixels."""
        map_size = map_size_for(size, self.map_max_side)
        score_map = normalize_scoremap(cam, map_size)
        box = box_to_image(box_from_map(score_map, self.threshold), map_size, size)
        order = np.argsort(-scores, kind="stable")[:self.topk]
        top = [(int(k), self.class_names[k], float(scores[k])) for k in order]
        return Prediction(source, size, top, scores, score_map.astype(np.float32), box, self.threshold)


def _in_memory_rgb(image: Image.Image | np.ndarray, i: int) -> Image.Image:
    """An image given in memory as 8-bit RGB, converted as the same image read from a file (16-bit grayscale
    scaled, not saturated; see :func:`tedloc.data.images.to_rgb`)."""
    if isinstance(image, Image.Image):
        try:
            return to_rgb(image)
        except DataError as e:
            raise TedlocError(f"image {i}: {e}") from None
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise TedlocError(f"image {i}: arrays must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return Image.fromarray(image)
