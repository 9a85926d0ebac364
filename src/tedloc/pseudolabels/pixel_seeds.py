"""DiPS's pixel pseudo-labels (thesis §2.3.3): foreground seeds inside the chosen proposal, background seeds
outside every proposal, drawn anew at each step.

For each image, with its activation map ``A`` (the attention map the chosen proposal came from, on
the training view's grid), the chosen proposal's box and the union of all its proposals' boxes:

- foreground: the pool is the top ``fg_pool`` share of the box's pixels by ``A``; ``fg_count``
  pixels are drawn from it without replacement with probability proportional to ``A`` (DiPS's
  ``weighted`` seeds);
- background: the pool is the bottom ``bg_pool`` share by ``A`` of the pixels outside every box
  (the thesis; ``background="anywhere"`` takes the bottom share of the whole map, as DiPS's code
  does; ``background="border"``, tedloc's boundary prior, not the papers', the bottom share of the view's outer
  ring, ``bg_border`` of its side wide, outside the chosen box; an image whose boxes cover the whole view falls
  back to the whole map); ``bg_count`` pixels are drawn uniformly without replacement;
- every seed is dilated by a ``dilation`` x ``dilation`` square; pixels both FG and BG are unset.

Labels: 1 foreground, 0 background, :data:`IGNORE` elsewhere. The draws come from keyed uniforms
(:mod:`tedloc.utils.keyed_random`), so a sample's seeds depend only on (seed, epoch, sample) and a
resumed run draws exactly what it would have. Weighted sampling without replacement uses the
exponential keys of Efraimidis and Spirakis (the largest ``log(u) / w`` win).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tedloc.pseudolabels.sampling import border_ring

__all__ = ["IGNORE", "DiPSSamplerConfig", "sample_pixel_labels", "box_masks", "top_in_pool", "seed_labels"]

IGNORE = -255  # DiPS's label of unlabelled pixels (the partial cross-entropy's ignore_index)
BACKGROUND_MODES = ("outside", "anywhere", "border")


@dataclass(frozen=True)
class DiPSSamplerConfig:
    """The seeds of one step (see the module docstring); counts per image."""

    fg_count: int = 100
    bg_count: int = 100
    fg_pool: float = 0.2
    bg_pool: float = 0.2
    background: str = "outside"
    dilation: int = 3
    bg_border: float = 0.125  # the ring's width, a share of the side (background "border")

    def __post_init__(self):
        if self.background not in BACKGROUND_MODES:
            raise ValueError(f"background must be one of {BACKGROUND_MODES}, got {self.background!r}")
        if not (0 < self.fg_pool <= 1 and 0 < self.bg_pool <= 1):
            raise ValueError("fg_pool and bg_pool must be in (0, 1]")
        if not 0 < self.bg_border < 0.5:
            raise ValueError(f"bg_border must be in (0, 0.5), got {self.bg_border}")
        if self.fg_count < 0 or self.bg_count < 0 or self.dilation < 1 or self.dilation % 2 == 0:
            raise ValueError("counts must be >= 0 and dilation an odd size >= 1")


def box_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, n, 4)`` inclusive boxes ``x0, y0, x1, y1`` (rows of -1: none) -> ``(B, n, H, W)`` bool masks."""
    h, w = size
    ys = torch.arange(h, device=boxes.device)[None, None, :, None]
    xs = torch.arange(w, device=boxes.device)[None, None, None, :]
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) & (x0 >= 0)


def top_in_pool(key: torch.Tensor, pool: torch.Tensor, count: int) -> torch.Tensor:
    """Per row, the ``count`` pool members of largest ``key`` (fewer when the pool is smaller), as a mask."""
    if count == 0:
        return torch.zeros_like(pool)
    ranked = torch.where(pool, key, torch.full_like(key, float("-inf")))
    top = ranked.topk(min(count, key.shape[1]), dim=1).indices
    chosen = torch.zeros_like(pool)
    chosen.scatter_(1, top, True)
    return chosen & pool


def _share_by_value(values: torch.Tensor, region: torch.Tensor, share: float, highest: bool) -> torch.Tensor:
    """Per row, the ``floor(share * |region|)`` members of ``region`` (at least one when it is not empty) of
    highest (or lowest) value; ties broken by position."""
    fill = float("-inf") if highest else float("inf")
    key = torch.where(region, values, torch.full_like(values, fill))
    order = torch.argsort(key, dim=1, descending=highest, stable=True)
    rank = torch.argsort(order, dim=1)
    size = region.sum(dim=1, keepdim=True)
    keep = torch.clamp(torch.floor(size * share), min=1) * (size > 0)
    return region & (rank < keep)


def sample_pixel_labels(maps: torch.Tensor, chosen: torch.Tensor, any_box: torch.Tensor, u_fg: torch.Tensor,
                        u_bg: torch.Tensor, config: DiPSSamplerConfig = DiPSSamplerConfig()) -> torch.Tensor:
    """Labels ``(B, H, W)`` (1, 0, :data:`IGNORE`) from activation maps ``(B, H, W)`` in [0, 1], the chosen box's
    mask and the union of all boxes ``(B, H, W)`` bool, and uniforms in (0, 1) ``(B, H*W)`` for the two draws."""
    b, h, w = maps.shape
    if b == 0:
        return torch.full((0, h, w), IGNORE, dtype=torch.long, device=maps.device)
    values = maps.reshape(b, -1).float()
    inside = chosen.reshape(b, -1)
    if config.background == "outside":
        outside = ~any_box.reshape(b, -1)
    elif config.background == "border":
        outside = border_ring(h, w, config.bg_border, device=maps.device)[None] & ~inside
    else:
        outside = torch.ones_like(inside)
    # boxes covering the whole view leave nothing outside: that image's background comes from the whole map
    outside = torch.where(outside.any(dim=1, keepdim=True), outside, torch.ones_like(outside))
    fg_pool = _share_by_value(values, inside, config.fg_pool, highest=True)
    weights = values.clamp_min(1e-12)
    fg = top_in_pool(torch.log(u_fg.clamp_min(1e-300)).float() / weights, fg_pool, config.fg_count)
    bg_pool = _share_by_value(values, outside, config.bg_pool, highest=False)
    bg = top_in_pool(u_bg.float(), bg_pool, config.bg_count)
    return seed_labels(fg.reshape(b, h, w), bg.reshape(b, h, w), config.dilation)


def seed_labels(fg: torch.Tensor, bg: torch.Tensor, dilation: int) -> torch.Tensor:
    """Labels ``(B, H, W)`` of FG and BG seed masks ``(B, H, W)`` bool: each seed dilated by a ``dilation`` square,
    1 foreground, 0 background, :data:`IGNORE` elsewhere and where both meet."""
    b, h, w = fg.shape
    fg, bg = fg[:, None].float(), bg[:, None].float()
    if dilation > 1:
        pad = dilation // 2
        fg = F.max_pool2d(fg, dilation, stride=1, padding=pad)
        bg = F.max_pool2d(bg, dilation, stride=1, padding=pad)
    fg, bg = fg[:, 0] > 0, bg[:, 0] > 0
    labels = torch.full((b, h, w), IGNORE, dtype=torch.long, device=fg.device)
    labels[fg & ~bg] = 1
    labels[bg & ~fg] = 0
    return labels
