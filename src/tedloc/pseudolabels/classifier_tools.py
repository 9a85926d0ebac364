"""What the realistic protocol's annotators and DiPS's proposal scoring ask of a pretrained classifier: its
true-class CAM, the CAM's peak, and its confidence in a box (the image with the outside of the box blurred).

The confidence in a box is the softmax probability of the true class for the image whose outside of
the box is blurred by a Gaussian (sigma = 1/8 of the image's longer side unless ``blur_sigma`` is
given), so context is damped but the object's scale is kept (DiPS's scoring; the thesis' protocol
uses it for Selective Search and RPN proposals).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from tedloc.eval.scoremaps import normalize_scoremap
from tedloc.models.localizer import ClassConditionalMaps

__all__ = ["ClassifierTools"]


@dataclass
class ClassifierTools:
    """What the annotators and proposal scoring need from a pretrained classifier run (a CAM localizer)."""

    localizer: ClassConditionalMaps  # a LocalizationModel with class-conditional maps (a CAM localizer)
    batch_size: int = 64
    blur_sigma: float | None = None  # the blur outside a box (None: 1/8 of the image's longer side)

    def __post_init__(self):
        if self.blur_sigma is not None and not self.blur_sigma > 0:
            raise ValueError(f"blur_sigma must be positive, got {self.blur_sigma}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        return self.localizer.preprocessing.eval_input(image)

    def cam(self, image: Image.Image, label: int) -> np.ndarray:
        """The true-class CAM at the image's size, min-max normalised (the evaluation's rule)."""
        with torch.no_grad():
            raw = self.localizer.cams(self._tensor(image)[None], torch.tensor([label]))[0]
        return normalize_scoremap(raw.double().cpu().numpy(), image.size)

    def peak(self, image: Image.Image, label: int) -> tuple[int, int]:
        """``(x, y)`` of the maximum of the true-class CAM, in image pixels."""
        m = self.cam(image, label)
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        return int(x), int(y)

    def confidence(self, image: Image.Image, label: int, boxes: np.ndarray) -> np.ndarray:
        """Softmax probability of ``label`` for the image with the outside of each box blurred."""
        return self.confidences([(image, label, boxes)])[0]

    def confidences(self, items: list[tuple[Image.Image, int, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`confidence` of several ``(image, label, boxes)`` at once: the composites of all the images go
        through the classifier in batches of ``batch_size`` (the same numbers, fewer and fuller forwards; at most
        one batch of composites in memory)."""
        probs: list[np.ndarray] = []
        owners: list[int] = []
        batch: list[torch.Tensor] = []
        labels: list[int] = []

        def flush() -> None:
            scores, _ = self.localizer.predict(torch.stack(batch))
            index = torch.tensor(labels, device=scores.device)[:, None]
            probs.append(scores.gather(1, index)[:, 0].double().cpu().numpy())
            batch.clear()
            labels.clear()

        for n, (image, label, boxes) in enumerate(items):
            rgb = np.asarray(image.convert("RGB"))
            sigma = self.blur_sigma if self.blur_sigma is not None else max(1.0, max(rgb.shape[:2]) / 8)
            blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
            for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
                composite = blurred.copy()
                composite[y0:y1 + 1, x0:x1 + 1] = rgb[y0:y1 + 1, x0:x1 + 1]
                batch.append(self._tensor(Image.fromarray(composite)))
                labels.append(int(label))
                owners.append(n)
                if len(batch) == self.batch_size:
                    flush()
        if batch:
            flush()
        flat = np.concatenate(probs) if probs else np.zeros(0)
        which = np.array(owners, dtype=np.int64)
        return [flat[which == n] for n in range(len(items))]
