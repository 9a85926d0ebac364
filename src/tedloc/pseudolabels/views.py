"""Bring cached maps (defined on the whole image) onto a training sample's crop, flip and grid."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tedloc.data.transforms import View

__all__ = ["maps_on_grid", "boxes_on_view"]


def maps_on_grid(maps: torch.Tensor | Sequence[torch.Tensor], views: torch.Tensor, grid: tuple[int, int]
                 ) -> torch.Tensor:
    """Apply each sample's view (``WSOLImageDataset``'s ``view`` tensors, (B, 9)) to its map covering the whole
    original image (a tensor (B, h, w), or B maps of their own sizes: :meth:`MapCache.get` of per-image maps),
    then resample bilinearly to ``grid`` = (H, W)."""
    out = []
    for m, v in zip(maps, views):
        viewed = View.from_tensor(v).map(m)
        out.append(F.interpolate(viewed[None, None], size=tuple(grid), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out)


def boxes_on_view(boxes: np.ndarray, view: View, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Masks ``(n, H, W)`` of inclusive original-image boxes ``(n, 4)`` after ``view`` (resize, crop, flip), on a
    grid of ``size`` = (H, W) (default: the view's output). A pixel is inside when its centre is inside the
    box's pixel extent, so the identity view gives the box's own pixels; a box the crop leaves out is empty."""
    w, h = view.out_size
    gh, gw = size or (h, w)
    masks = torch.zeros((len(boxes), gh, gw), dtype=torch.bool)
    ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * h / gh
    xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * w / gw
    for i, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        mapped = view.boxes(box[None])
        if len(mapped):
            x0, y0, x1, y1 = mapped[0]
            inside_y = (ys >= y0) & (ys < y1 + 1)
            inside_x = (xs >= x0) & (xs < x1 + 1)
            masks[i] = inside_y[:, None] & inside_x[None, :]
    return masks
