"""Paired geometric transforms, as in wsolevaluation, applied alike to images, boxes, masks and maps.

Train: resize to ``(resize_size, resize_size)`` ignoring the aspect ratio, random crop of
``input_size``, random horizontal flip. Eval: resize straight to ``(input_size, input_size)``.
(wsolevaluation: 256 -> 224 for training, 224 for evaluation.)

A transform draws a :class:`View`, the exact geometry applied to one image. The view is
returned with every training sample, so anything defined on the original image (boxes, GT
masks, pseudo-label maps cached at any resolution) is mapped onto the same pixels later.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tedloc.errors import OptionError

__all__ = ["View", "TrainTransform", "EvalTransform", "NativeTransform", "to_normalized_tensor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation of weights trained here (and of ImageNet weights)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class View:
    """Geometry of one sample: resize the original to ``resized``, crop ``crop``, then maybe flip.

    Attributes:
        src_size: original ``(width, height)``.
        resized: ``(width, height)`` after the resize.
        crop: ``(left, top, width, height)`` in the resized image.
        flip: horizontal flip after the crop.
    """

    src_size: tuple[int, int]
    resized: tuple[int, int]
    crop: tuple[int, int, int, int]
    flip: bool = False

    @property
    def out_size(self) -> tuple[int, int]:
        """``(width, height)`` of the view's output."""
        return self.crop[2], self.crop[3]

    def image(self, image: Image.Image, interpolation: str = "bilinear") -> Image.Image:
        """Apply the view to a PIL image of size ``src_size`` (``interpolation``: the resize; bilinear, as
        torchvision)."""
        if image.size != tuple(self.src_size):
            raise ValueError(f"image is {image.size[0]}x{image.size[1]}, view expects {self.src_size}")
        if image.size != tuple(self.resized):
            image = image.resize(self.resized, _RESAMPLE[interpolation])
        left, top, w, h = self.crop
        if (left, top, w, h) != (0, 0, *self.resized):
            image = image.crop((left, top, left + w, top + h))
        if self.flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map inclusive ``(x0, y0, x1, y1)`` boxes of the original image into the view (float64).

        Boxes are scaled as pixel extents (``[x0, x1 + 1)``), clipped to the crop; boxes that end up
        outside it are dropped.
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx = self.resized[0] / self.src_size[0]
        sy = self.resized[1] / self.src_size[1]
        left, top, w, h = self.crop
        x0 = b[:, 0] * sx - left
        x1 = (b[:, 2] + 1) * sx - left
        y0 = b[:, 1] * sy - top
        y1 = (b[:, 3] + 1) * sy - top
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
        if self.flip:
            x0, x1 = w - x1, w - x0
        out = np.stack([x0, y0, x1 - 1, y1 - 1], axis=1)
        keep = (x1 - x0 > 0) & (y1 - y0 > 0)
        return out[keep]

    def map(self, array: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Apply the view to a map covering the whole original image, at any resolution.

        Args:
            array: tensor of shape (..., H, W); any H, W (e.g. a CAM at feature resolution).
            mode: ``bilinear`` for scores, ``nearest`` for labels and masks.
        Returns:
            tensor of shape (..., crop height, crop width), float32.
        """
        lead = array.shape[:-2]
        x = array.reshape(1, -1, *array.shape[-2:]).float()
        rw, rh = self.resized
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        x = F.interpolate(x, size=(rh, rw), mode=mode, **kwargs)
        left, top, w, h = self.crop
        x = x[..., top:top + h, left:left + w]
        if self.flip:
            x = x.flip(-1)
        return x.reshape(*lead, h, w)

    def to_tensor(self) -> torch.Tensor:
        """The view as 9 int64 numbers, so that it survives a DataLoader's collation."""
        return torch.tensor([*self.src_size, *self.resized, *self.crop, int(self.flip)], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "View":
        """The view of :meth:`to_tensor`'s numbers."""
        v = [int(x) for x in t.tolist()]
        return cls((v[0], v[1]), (v[2], v[3]), (v[4], v[5], v[6], v[7]), bool(v[8]))


@dataclass(frozen=True)
class TrainTransform:
    """Resize to ``resize_size`` (square), random crop ``input_size``, random horizontal flip.

    ``resize_size`` defaults to ``round(input_size * 256 / 224)`` (wsolevaluation's ratio).
    """

    input_size: int = 224
    resize_size: int | None = None
    flip: bool = True

    def view(self, src_size: tuple[int, int], rng: np.random.Generator) -> View:
        """The random view of an image of ``src_size`` (width, height), drawn from ``rng``."""
        r = self.resize_size or round(self.input_size * 256 / 224)
        if r < self.input_size:
            raise OptionError(f"resize_size {r} is smaller than input_size {self.input_size}")
        left = int(rng.integers(0, r - self.input_size + 1))
        top = int(rng.integers(0, r - self.input_size + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        return View(tuple(src_size), (r, r), (left, top, self.input_size, self.input_size), flip)


@dataclass(frozen=True)
class EvalTransform:
    """Resize straight to ``(input_size, input_size)``, ignoring the aspect ratio."""

    input_size: int = 224

    def view(self, src_size: tuple[int, int], rng: np.random.Generator | None = None) -> View:
        """The view of an image of ``src_size`` (width, height); ``rng`` is not used."""
        s = self.input_size
        return View(tuple(src_size), (s, s), (0, 0, s, s), False)


@dataclass(frozen=True)
class NativeTransform:
    """Keep the image's own size, rounded up to a multiple of ``multiple`` on each side (CLIP-ES's view: each
    image at its own size for a ViT of ``multiple``-pixel patches), the aspect ratio stretched by less than a
    patch.

    ``max_side``: an image whose longer side exceeds it is first scaled down (aspect ratio kept, sides rounded)
    so that its longer side is ``max_side``; None: never.
    """

    multiple: int = 16
    max_side: int | None = None

    def __post_init__(self):
        if int(self.multiple) < 1:
            raise OptionError(f"multiple must be positive, got {self.multiple}")
        if self.max_side is not None and int(self.max_side) < int(self.multiple):
            raise OptionError(f"max_side {self.max_side} is smaller than one multiple of {self.multiple}")

    def size(self, src_size: tuple[int, int]) -> tuple[int, int]:
        """The ``(width, height)`` an image of ``src_size`` is resized to."""
        w, h = (int(s) for s in src_size)
        if self.max_side is not None and max(w, h) > self.max_side:
            scale = self.max_side / max(w, h)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
        m = int(self.multiple)
        return -(-w // m) * m, -(-h // m) * m

    def view(self, src_size: tuple[int, int], rng: np.random.Generator | None = None) -> View:
        """The view of an image of ``src_size`` (width, height); ``rng`` is not used."""
        w, h = self.size(src_size)
        return View(tuple(src_size), (w, h), (0, 0, w, h), False)


def to_normalized_tensor(
    image: Image.Image, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """PIL RGB image -> float32 tensor (3, H, W), scaled to [0, 1] then normalised."""
    arr = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return arr.sub_(m).div_(s)
