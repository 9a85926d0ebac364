"""One preprocessing record, owned by the model: input size, train resize, normalisation, interpolation.

A model is created with the record of its weights (timm's pretrained config gives the mean and std;
see :func:`tedloc.models.preprocessing_of`), the record travels in the run's ``model.json``, and
every consumer (training, evaluation, pseudo-label maps, pseudo-boxes, inference) asks the model
for it instead of rebuilding transforms and normalisation itself::

    pre = localizer.preprocessing
    dataset = pre.dataset(split)              # eval views, normalised tensors
    x = pre.eval_input(pil_image)             # one image, as the model expects it

The geometry follows wsolevaluation whatever the weights: train = resize to ``resize_size``
(default ``round(input_size * 256 / 224)``), random crop of ``input_size``, flip; eval = resize to
``input_size``. ``interpolation`` is the image resize (``bilinear``, torchvision's default and
wsolevaluation's).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from PIL import Image

from tedloc.data.torch_dataset import WSOLImageDataset
from tedloc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, to_normalized_tensor
from tedloc.errors import OptionError, TedlocError

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS"]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_TOLERANCE = 1e-6  # normalisations closer than this are the same (float32 round trips)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of an image (see the module docstring).

    Args:
        input_size: side of the square the model sees.
        resize_size: training resize before the random crop; None: ``round(input_size * 256 / 224)``.
        mean, std: per-channel normalisation of [0, 1] RGB values (those the weights were trained with).
        interpolation: image resize, one of :data:`INTERPOLATIONS`.
    """

    input_size: int = 224
    resize_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if int(self.input_size) < 1:
            raise OptionError(f"input_size must be positive, got {self.input_size}")
        if self.resize_size is not None and int(self.resize_size) < int(self.input_size):
            raise OptionError(f"resize_size {self.resize_size} is smaller than input_size {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise OptionError(f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise OptionError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")

    # ----------------------------------------------------------------- transforms
    def train_transform(self, flip: bool = True):
        """Resize to ``resize_size``, random crop of ``input_size``, random flip (a :class:`TrainTransform`)."""
        return TrainTransform(self.input_size, self.resize_size, flip)

    def eval_transform(self):
        """Resize straight to ``input_size`` (an :class:`EvalTransform`)."""
        return EvalTransform(self.input_size)

    def normalize(self, image: Image.Image) -> torch.Tensor:
        """A PIL RGB image (already at the model's geometry) as a normalised float32 tensor (3, H, W)."""
        return to_normalized_tensor(image, self.mean, self.std)

    def view_input(self, view, image: Image.Image) -> torch.Tensor:
        """``image`` through ``view`` (a :class:`~tedloc.data.transforms.View`, resized with :attr:`interpolation`),
        normalised: what the model sees of it."""
        return self.normalize(view.image(image, self.interpolation))

    def eval_input(self, image: Image.Image) -> torch.Tensor:
        """One image as the model sees it at evaluation: the eval view, then normalisation."""
        return self.view_input(self.eval_transform().view(image.size), image)

    def dataset(self, split, train: bool = False, seed: int = 0, frames_per_shot: int = 1):
        """A :class:`~tedloc.data.torch_dataset.WSOLImageDataset` of ``split`` with this preprocessing
        (random training views with ``train``, keyed by ``seed``; ``frames_per_shot`` samples per shot of a
        video split)."""
        return WSOLImageDataset(split, self, train=train, seed=seed, frames_per_shot=frames_per_shot)

    # ----------------------------------------------------------------- records
    def replace(self, **changes) -> "Preprocessing":
        """A copy with ``changes`` (``input_size=...``, ...)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The JSON record stored in a run's ``model.json`` (``preprocessing``)."""
        return {"input_size": int(self.input_size), "resize_size": self.resize_size, "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, record: dict, where: str = "preprocessing") -> "Preprocessing":
        """The record of :meth:`to_dict` (records without ``resize_size`` or ``interpolation`` get the
        defaults); a missing or malformed field is a :class:`TedlocError` naming ``where`` and the field."""
        if not isinstance(record, dict):
            raise TedlocError(f"{where}: expected a preprocessing record, got {type(record).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for name in ("input_size", "mean", "std"):
            if name not in record:
                raise TedlocError(f"{where}: no {name!r}")
        try:
            return cls(**{k: v for k, v in record.items() if k in known})
        except (OptionError, TypeError, ValueError) as e:
            raise TedlocError(f"{where}: {e}") from None

    def check_normalization(self, expected: "Preprocessing", where: str) -> None:
        """Refuse a record whose normalisation is not ``expected``'s (the weights'): a network used under
        another normalisation than its weights were trained with gives wrong results without a word."""
        for name in ("mean", "std"):
            mine, theirs = getattr(self, name), getattr(expected, name)
            if any(abs(a - b) > _TOLERANCE for a, b in zip(mine, theirs)):
                raise TedlocError(f"{where}: preprocessing {name} {list(mine)} differs from {list(theirs)}, "
                                  f"the normalisation its weights expect")
