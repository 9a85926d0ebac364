"""DiPS's object proposals from attention maps (thesis Alg. 2.1): Otsu on each map, every connected region's
tight box, a minimum size.

The map set of an image is the mean over all heads of the class token's attention followed by the
maps of a few heads (the thesis: heads 0-3), each divided by its own maximum. Each map, resized to
the image, is cut by Otsu on its 8-bit levels (``floor(255 x map)``; the cut clamped to [1, 254] as
DiPS does; a constant map gives no proposal); every 8-connected region gives its tight box. The
boxes of all maps are pooled, each with the index of its map; those whose area is at most
``min_size`` of the image are dropped, and when none is left the largest box of the pool is kept
(DiPS's ``blur_bg`` applies the rule per image): the image's proposal set.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tedloc.pseudolabels.sampling import otsu_levels

__all__ = ["Proposal", "attention_map_set", "otsu_cut_u8", "map_regions", "keep_large", "map_proposals",
           "image_proposals"]


@dataclass(frozen=True)
class Proposal:
    """One box (inclusive pixels ``x0, y0, x1, y1`` of the map's grid) and the index of the map it came from."""

    box: tuple[int, int, int, int]
    map_index: int

    @property
    def area(self) -> int:
        """Pixels inside the box."""
        x0, y0, x1, y1 = self.box
        return (x1 - x0 + 1) * (y1 - y0 + 1)


def attention_map_set(cls_maps: torch.Tensor, heads: tuple[int, ...] = (0, 1, 2, 3)) -> torch.Tensor:
    """``(B, 1 + len(heads), gh, gw)``: the mean over all heads, then the maps of ``heads``, each divided by its
    maximum (a map whose maximum is not positive becomes zeros)."""
    if max(heads, default=-1) >= cls_maps.shape[1]:
        raise ValueError(f"heads {heads} for maps of {cls_maps.shape[1]} heads")
    maps = torch.cat([cls_maps.mean(dim=1, keepdim=True), cls_maps[:, list(heads)]], dim=1).float()
    peak = maps.flatten(2).max(dim=2).values[..., None, None]
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def otsu_cut_u8(levels: np.ndarray) -> int | None:
    """DiPS's Otsu cut of 8-bit levels (foreground: level > cut), clamped to [1, 254]; None for a constant map."""
    levels = np.asarray(levels, dtype=np.int64).reshape(-1)
    if levels.min() == levels.max():
        return None
    cut = int(otsu_levels(torch.from_numpy(levels)[None])[0])
    return min(max(cut, 1), 254)


def map_regions(score_map: np.ndarray, map_index: int = 0) -> list[Proposal]:
    """The boxes of the 8-connected regions of one map in [0, 1] above its Otsu cut (none when the map is
    constant or nothing is above the cut)."""
    levels = np.floor(np.clip(np.asarray(score_map, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    cut = otsu_cut_u8(levels)
    if cut is None:
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats((levels > cut).astype(np.uint8), connectivity=8)
    return [Proposal((int(x), int(y), int(x + w - 1), int(y + h - 1)), map_index) for x, y, w, h, _a in stats[1:count]]


def keep_large(proposals: list[Proposal], total_area: int, min_size: float) -> list[Proposal]:
    """The proposals whose area is more than ``min_size`` of ``total_area``; when none is, the largest one alone
    (DiPS's ``blur_bg``); none for none."""
    if not proposals:
        return []
    kept = [p for p in proposals if p.area / total_area > min_size]
    return kept or [max(proposals, key=lambda p: p.area)]


def map_proposals(score_map: np.ndarray, min_size: float, map_index: int = 0) -> list[Proposal]:
    """The proposals of one map alone: :func:`map_regions` filtered by :func:`keep_large`."""
    return keep_large(map_regions(score_map, map_index), int(np.asarray(score_map).size), min_size)


def image_proposals(map_set: torch.Tensor, size: tuple[int, int], min_size: float) -> list[Proposal]:
    """The proposals of one image from its map set ``(M, gh, gw)``: each map resized (bilinear, corners not
    aligned) to ``size`` = ``(height, width)``, the regions of all maps pooled, then the minimum size applied
    to the pool (the largest box kept when no box is large enough). A constant map has no region (checked
    before the resize, whose float rounding would make it uneven)."""
    resized = F.interpolate(map_set[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
    flat = map_set.flatten(1)
    constant = (flat.max(dim=1).values == flat.min(dim=1).values).tolist()
    regions: list[Proposal] = []
    for index, m in enumerate(resized.clamp(0, 1).cpu().numpy()):
        if not constant[index]:
            regions.extend(map_regions(m, index))
    return keep_large(regions, size[0] * size[1], min_size)
