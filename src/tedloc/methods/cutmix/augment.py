"""CutMix (Yun et al. 2019) as wsolevaluation applies it to a training batch: with probability ``prob`` a box of
another image of the batch (a random permutation) is pasted into each image; the box's area fraction is drawn
from Beta(``beta``, ``beta``), its centre uniformly, and the labels mix in proportion to the areas kept."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["cutmix_box", "CutMix", "cutmix_batch"]


def cutmix_box(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The pasted box ``(y0, x0, y1, x1)`` (rows ``y0:y1``, columns ``x0:x1``) of an image of ``height`` x
    ``width`` for a mixing ratio ``lam`` and a centre (``cy``, ``cx``): sides ``int(side * sqrt(1 - lam))``,
    halved (floor) on each side of the centre, clipped to the image."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(y0), int(x0), int(y1), int(x1)


@dataclass(frozen=True)
class CutMix:
    """A batch after CutMix: the mixed ``images``, the labels of the pasted images (``labels_b``: the true
    labels' permutation), ``lam`` (the fraction of each image that is its own) and the ``box``
    ``(y0, x0, y1, x1)``; ``applied`` False: the batch as it was (``lam`` 1)."""

    images: torch.Tensor
    labels_b: torch.Tensor
    lam: float
    box: tuple[int, int, int, int]
    applied: bool


def cutmix_batch(images: torch.Tensor, labels: torch.Tensor, beta: float, prob: float, rng: np.random.Generator
                 ) -> CutMix:
    """CutMix of a batch ``images`` (B, C, H, W) with its ``labels`` (B,), drawn from ``rng`` in this order: the
    coin (applied when ``prob`` > a uniform draw and ``beta`` > 0), lam ~ Beta(beta, beta), the permutation, the
    box's centre row then column. The input is not modified."""
    if not (prob > rng.random() and beta > 0):
        return CutMix(images, labels, 1.0, (0, 0, 0, 0), False)
    lam = float(rng.beta(beta, beta))
    order = torch.from_numpy(rng.permutation(len(labels))).to(labels.device)
    height, width = images.shape[-2:]
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, x0, y1, x1 = cutmix_box(height, width, lam, cy, cx)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[order, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return CutMix(mixed, labels[order], kept, (y0, x0, y1, x1), True)
