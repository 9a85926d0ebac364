"""TrCAM-V's pixel pseudo-labels (thesis app. II §2.3; TCAM's seeder): an Otsu region of interest in the frame's
pseudo-label map, foreground seeds drawn inside it, background seeds among the map's lowest pixels, every step.

For a map ``S`` in [0, 1] (on the training view's grid):

1. **ROI**: the pixels with ``255 S >= otsu(floor(255 S))`` (Otsu's threshold over 256 bins spanning the map's
   range). ``roi="all"`` keeps them all; ``roi="densest"`` keeps the 4-connected component of highest mean ``S``,
   or the largest one when that covers less than ``min_roi_area`` of the map. A constant map gives no seed.
2. **Foreground**: the pool is the ``floor(fg_pool |ROI|)`` pixels of highest ``S * ROI``; ``fg_count`` pixels are
   drawn from it without replacement, with probability proportional to ``S`` (weighted seeds).
3. **Background**: the pool is the ``floor(bg_pool H W)`` pixels of lowest ``S``; ``bg_count`` pixels are drawn from
   it uniformly without replacement.
4. Seeds are dilated by a ``dilation`` x ``dilation`` square; pixels both FG and BG are unset.

Labels: 1 foreground, 0 background, :data:`~tedloc.pseudolabels.pixel_seeds.IGNORE` elsewhere. The draws come
from keyed uniforms, so a sample's seeds depend only on (seed, epoch, sample). Weighted sampling without replacement
takes the largest ``log(u) / w`` (Efraimidis and Spirakis), the distribution of ``torch.multinomial``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from tedloc.pseudolabels.pixel_seeds import IGNORE, seed_labels, top_in_pool

__all__ = ["OtsuSeederConfig", "otsu_threshold", "region_of_interest", "sample_otsu_seeds", "ROI_METHODS"]

ROI_METHODS = ("all", "densest")


@dataclass(frozen=True)
class OtsuSeederConfig:
    """The seeds of one step (see the module docstring); counts per image. Defaults: the TrCAM-V code's."""

    fg_count: int = 1
    bg_count: int = 1
    fg_pool: float = 0.6
    bg_pool: float = 0.1
    roi: str = "densest"
    min_roi_area: float = 0.05
    dilation: int = 3

    def __post_init__(self):
        if self.roi not in ROI_METHODS:
            raise ValueError(f"roi must be one of {ROI_METHODS}, got {self.roi!r}")
        if not (0 <= self.fg_pool <= 1 and 0 <= self.bg_pool <= 1 and 0 < self.min_roi_area < 1):
            raise ValueError("fg_pool and bg_pool must be in [0, 1], min_roi_area in (0, 1)")
        if self.fg_count < 0 or self.bg_count < 0 or self.dilation < 1 or self.dilation % 2 == 0:
            raise ValueError("counts must be >= 0 and dilation an odd size >= 1")


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` over 256 equal bins spanning their range (the centre of the bin that
    maximises the between-class variance; scikit-image's ``threshold_otsu``); the value itself when constant."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if low == high:
        return low
    hist, edges = np.histogram(values, bins=256, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    hist = hist.astype(np.float64)
    weight1 = np.cumsum(hist)
    weight2 = np.cumsum(hist[::-1])[::-1]
    mean1 = np.cumsum(hist * centres) / weight1
    mean2 = (np.cumsum((hist * centres)[::-1]) / weight2[::-1])[::-1]
    between = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def region_of_interest(cam: np.ndarray, method: str = "densest", min_area: float = 0.05) -> np.ndarray:
    """The ROI (bool HxW) of one map in [0, 1] (step 1 of the module docstring); empty for a constant map."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.min() == cam.max():
        return np.zeros(cam.shape, dtype=bool)
    blobs = cam * 255.0 >= otsu_threshold(np.floor(cam * 255.0))
    if method == "all":
        return blobs
    count, labels = cv2.connectedComponents(blobs.astype(np.uint8), connectivity=4)
    if count <= 1:
        return blobs
    ids = labels.ravel()
    areas = np.bincount(ids, minlength=count)[1:].astype(np.float64)
    density = np.bincount(ids, weights=cam.ravel().astype(np.float64), minlength=count)[1:] / areas
    best = int(np.argmax(density))
    if areas[best] < cam.size * min_area:
        best = int(np.argmax(areas))
    return labels == best + 1


def _first_ranks(values: torch.Tensor, counts: torch.Tensor, descending: bool) -> torch.Tensor:
    """Per row, the ``counts`` pixels first in a stable sort of ``values``, as a mask."""
    order = torch.argsort(values, dim=1, descending=descending, stable=True)
    rank = torch.argsort(order, dim=1)
    return rank < counts[:, None]


def sample_otsu_seeds(maps: torch.Tensor, u_fg: torch.Tensor, u_bg: torch.Tensor,
                      config: OtsuSeederConfig = OtsuSeederConfig()) -> torch.Tensor:
    """Labels ``(B, H, W)`` (1, 0, IGNORE) from pseudo-label maps ``(B, H, W)`` in [0, 1] and uniforms in (0, 1)
    ``(B, H*W)`` for the two draws."""
    b, h, w = maps.shape
    if b == 0:
        return torch.full((0, h, w), IGNORE, dtype=torch.long, device=maps.device)
    cams = maps.float()
    rois = np.stack([region_of_interest(m, config.roi, config.min_roi_area) for m in cams.cpu().numpy()])
    roi = torch.from_numpy(rois).to(maps.device).reshape(b, -1)
    values = cams.reshape(b, -1)
    flat = values.flatten(1)
    varies = (flat.amax(dim=1) > flat.amin(dim=1))[:, None]
    fg_counts = (config.fg_pool * roi.sum(dim=1).float()).long()  # float32 product, as the public int(max_p * n)
    fg_pool = _first_ranks(values * roi + 1e-8, fg_counts, descending=True) & varies
    fg = top_in_pool(torch.log(u_fg.clamp_min(1e-300)).float() / (values * roi + 1e-8), fg_pool, config.fg_count)
    bg_counts = torch.full((b,), int(config.bg_pool * h * w), dtype=torch.long, device=maps.device)
    bg_pool = _first_ranks(values + 1e-8, bg_counts, descending=False) & varies
    bg = top_in_pool(u_bg.float(), bg_pool, config.bg_count)
    return seed_labels(fg.reshape(b, h, w), bg.reshape(b, h, w), config.dilation)
