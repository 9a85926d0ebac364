"""Bring cached maps (defined on the whole image) onto a training sample's crop, flip and grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tedloc.data.transforms import View

__all__ = ["maps_on_grid"]


def maps_on_grid(maps: torch.Tensor, views: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Apply each sample's view (``WSOLImageDataset``'s ``view`` tensors, (B, 9)) to its map (B, h, w)
    covering the whole original image, then resample bilinearly to ``grid`` = (H, W)."""
    out = []
    for m, v in zip(maps, views):
        viewed = View.from_tensor(v).map(m)
        out.append(F.interpolate(viewed[None, None], size=tuple(grid), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out)
