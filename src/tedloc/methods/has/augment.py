"""Hide-and-Seek's augmentation (Singh & Lee 2017), as wsolevaluation applies it: the training image is cut into
a grid of ``grid_size`` x ``grid_size`` pixel patches, and each patch is hidden with probability ``drop_rate``:
set to 0 in the normalised image, i.e. to the dataset's mean colour."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["hidden_patches", "hide_patches", "patch_side"]


def hidden_patches(height: int, width: int, grid_size: int, drop_rate: float, rng: np.random.Generator
                   ) -> torch.Tensor:
    """The (height, width) boolean mask of the hidden pixels: one uniform draw per patch, row by row (the
    patches of the first ``grid_size`` rows first, left to right); a patch whose draw is ``<= drop_rate`` is
    hidden. ``grid_size`` 0: nothing hidden."""
    if grid_size <= 0:
        return torch.zeros(height, width, dtype=torch.bool)
    rows, cols = math.ceil(height / grid_size), math.ceil(width / grid_size)
    draws = torch.from_numpy(rng.random((rows, cols)) <= drop_rate)
    return draws.repeat_interleave(grid_size, 0).repeat_interleave(grid_size, 1)[:height, :width]


def hide_patches(images: torch.Tensor, grid_size: int, drop_rate: float, rngs: list[np.random.Generator]
                 ) -> torch.Tensor:
    """A copy of ``images`` (B, C, H, W), normalised, with the patches :func:`hidden_patches` draws for image
    ``b`` from ``rngs[b]`` set to 0 (the mean) in every channel."""
    _, _, height, width = images.shape
    masks = torch.stack([hidden_patches(height, width, grid_size, drop_rate, rng) for rng in rngs])
    return images.masked_fill(masks[:, None].to(images.device), 0.0)


def patch_side(grid_size: int, patch_area: float | None, input_size: int) -> int:
    """The patch side in pixels: ``grid_size``, or with ``patch_area`` (a patch's area as a fraction of the
    image's) ``round(input_size * sqrt(patch_area))``, at least 1."""
    if patch_area is None:
        return int(grid_size)
    return max(1, round(input_size * math.sqrt(patch_area)))
