"""Foreground/background pseudo-labels drawn from localization maps (TeD-Loc appendix A, DiPS).

For each image's map (already on the output grid, and already through the same crop and flip
as the image: see :meth:`tedloc.data.transforms.View.map`):

1. Otsu's threshold on the map's 256-level quantisation ``floor(255 * m)`` splits it into a
   foreground region R (levels above the threshold) and the rest.
2. FG pool: the top ``fg_pool`` fraction (default 20 %) of R's locations by value;
   BG pool: the bottom ``bg_pool`` fraction (default 20 %) of the locations outside R.
3. Every call draws ``k`` FG and ``k`` BG locations afresh (default 10 each; uniformly, or
   FG weighted by the map's value), without replacement; both sides always get the same
   count, ``min(k, |FG pool|, |BG pool|)``: balanced.

``bg_border`` > 0 adds a boundary prior (not in the papers; tedloc's option): the outer ring of the grid,
``bg_border`` of its side wide on each side (at least one cell; an inside is always left), is taken as background.
Otsu's split sees the map with the ring below every other location: the map's 256 levels (min-max over the whole
grid, ring included) mapped to 25..255 inside and 0 on the ring, so R never reaches the ring. (A ring holding the
map's maximum squeezes the inside's levels together; Otsu then tends to take the whole inside as R.) BG candidates
are the ring's locations only, the BG pool the bottom ``bg_pool`` of them by value.

Maps that carry no ranking give no pseudo-labels, explicitly: a constant map (no Otsu split),
or a map with NaN/inf. Their rows in the result are all invalid (``valid`` False), so losses
skip them; :attr:`PseudoLabels.empty` counts them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tedloc.errors import OptionError
from tedloc.utils.keyed_random import keyed_uniform
from tedloc.utils.maps import minmax_rows

__all__ = ["SamplerConfig", "PseudoLabels", "PseudoLabelSampler", "otsu_levels", "candidate_pools", "border_ring"]


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling hyper-parameters (defaults: the TeD-Loc reading of the papers, see docs/TEDLOC.md)."""

    k: int = 10
    fg_pool: float = 0.2
    bg_pool: float = 0.2
    fg_weighting: str = "uniform"  # or "weighted": probability proportional to the map value
    bg_border: float = 0.0  # > 0: BG candidates only in the outer ring of this share of the side (boundary prior)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise OptionError("k must be >= 1")
        if not (0 < self.fg_pool <= 1 and 0 < self.bg_pool <= 1):
            raise OptionError("pool fractions must be in (0, 1]")
        if self.fg_weighting not in ("uniform", "weighted"):
            raise OptionError("fg_weighting must be 'uniform' or 'weighted'")
        if not 0 <= self.bg_border < 0.5:
            raise OptionError(f"bg_border must be in [0, 0.5), got {self.bg_border}")


@dataclass
class PseudoLabels:
    """Sampled locations (flat indices into the H*W grid), ``k`` columns per side.

    Attributes:
        fg: (B, k) long, foreground locations.
        bg: (B, k) long, background locations.
        valid: (B, k) bool, which columns hold a sample (the same for FG and BG: balanced).
    """

    fg: torch.Tensor
    bg: torch.Tensor
    valid: torch.Tensor

    @property
    def empty(self) -> int:
        """Images without any pseudo-label (constant or non-finite maps)."""
        return int((~self.valid.any(dim=1)).sum())


def _quantize(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """256-level quantisation of each (min-max normalised) map and the rows that can be ranked."""
    norm, ok = minmax_rows(maps)
    return (norm * 255).floor().clamp_(0, 255).long(), ok


def otsu_levels(levels: torch.Tensor) -> torch.Tensor:
    """Otsu threshold (an integer level t: foreground is level > t) of each row of 0..255 levels."""
    b = levels.shape[0]
    hist = torch.zeros(b, 256, dtype=torch.float64, device=levels.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float64))
    p = hist / hist.sum(dim=1, keepdim=True)
    omega = p.cumsum(dim=1)  # weight of levels <= t
    mu = (p * torch.arange(256, dtype=torch.float64, device=levels.device)).cumsum(dim=1)
    mu_t = mu[:, -1:]
    denom = omega * (1 - omega)
    between = torch.where(denom > 0, (mu_t * omega - mu) ** 2 / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return between.argmax(dim=1)  # the first maximum: the lowest optimal level


def border_ring(h: int, w: int, share: float, device: torch.device | None = None) -> torch.Tensor:
    """(H*W,) bool: the outer ring of an ``h`` x ``w`` grid, ``share`` of each side wide (at least one cell, and
    never the whole of a side of 3 cells or more: an inside is left); all False for ``share`` 0."""
    ring = torch.zeros(h, w, dtype=torch.bool, device=device)
    if share > 0:
        dy = max(1, min(round(share * h), (h - 1) // 2))
        dx = max(1, min(round(share * w), (w - 1) // 2))
        ring[:dy], ring[-dy:], ring[:, :dx], ring[:, -dx:] = True, True, True, True
    return ring.flatten()


def candidate_pools(maps: torch.Tensor, fg_pool: float = 0.2, bg_pool: float = 0.2, bg_border: float = 0.0):
    """Boolean (B, H*W) pools of FG and BG candidates, the Otsu foreground, and the usable rows (``bg_border``: the
    boundary prior of :class:`SamplerConfig`)."""
    levels, ok = _quantize(maps)
    values = levels.double()
    outside = torch.ones_like(levels, dtype=torch.bool)
    split = levels
    if bg_border > 0:  # the ring is background: below every other location for Otsu, the only BG candidates
        outside = border_ring(*maps.shape[-2:], bg_border, device=maps.device).expand_as(levels)
        split = torch.where(outside, torch.zeros_like(levels), (25.5 + 0.9 * levels).floor().long())
    region = split > otsu_levels(split)[:, None]
    outside = outside & ~region
    n_fg = region.sum(dim=1)
    n_bg = outside.sum(dim=1)
    # top fg_pool of the region by value: rank inside the region, highest first (stable for ties)
    fg_key = torch.where(region, values, torch.full_like(values, -1.0))
    fg_rank = torch.argsort(torch.argsort(-fg_key, dim=1, stable=True), dim=1)
    fg = region & (fg_rank < torch.ceil(n_fg * fg_pool)[:, None])
    bg_key = torch.where(outside, values, torch.full_like(values, 256.0))
    bg_rank = torch.argsort(torch.argsort(bg_key, dim=1, stable=True), dim=1)
    bg = outside & (bg_rank < torch.ceil(n_bg * bg_pool)[:, None])
    ok = ok & (n_fg > 0) & (n_bg > 0)
    return fg & ok[:, None], bg & ok[:, None], region, ok


class PseudoLabelSampler:
    """Draw balanced FG/BG pseudo-labels from maps, afresh at every call.

    Args:
        config: :class:`SamplerConfig`.
    """

    def __init__(self, config: SamplerConfig = SamplerConfig()):
        self.config = config

    def pools(self, maps: torch.Tensor):
        """(fg pool, bg pool) as boolean (B, H*W) masks."""
        fg, bg, _, _ = candidate_pools(maps, self.config.fg_pool, self.config.bg_pool, self.config.bg_border)
        return fg, bg

    def __call__(self, maps: torch.Tensor, generator: torch.Generator | None = None,
                 keys: torch.Tensor | None = None) -> PseudoLabels:
        """Sample from ``maps`` (B, H, W).

        ``keys`` (B,) (from :func:`tedloc.utils.keyed_random.sample_keys`) make each row's draw a
        function of its key alone: the same on any device, in any batch, in any process. Without
        keys the draw comes from ``generator`` (advanced by the call), or torch's global one.
        """
        k = self.config.k
        fg_pool, bg_pool, _, _ = candidate_pools(maps, self.config.fg_pool, self.config.bg_pool, self.config.bg_border)
        flat = maps.reshape(maps.shape[0], -1).double()
        if keys is not None:
            u_fg, u_bg = keyed_uniform(keys.to(maps.device), 2 * flat.shape[1]).chunk(2, dim=1)
        else:
            u_fg = torch.rand(fg_pool.shape, generator=generator, dtype=torch.float64, device=maps.device)
            u_bg = torch.rand(bg_pool.shape, generator=generator, dtype=torch.float64, device=maps.device)
        if self.config.fg_weighting == "weighted":
            # Efraimidis-Spirakis: the top-k of u^(1/w) is a weighted draw without replacement
            lo = flat.nan_to_num(0).min(dim=1, keepdim=True).values
            w = (flat.nan_to_num(0) - lo).clamp_min(1e-12)
            u_fg = u_fg.clamp_min(1e-300).log() / w
        fg_keys = torch.where(fg_pool, u_fg, torch.full_like(u_fg, -math.inf))
        bg_keys = torch.where(bg_pool, u_bg, torch.full_like(u_bg, -math.inf))
        n = min(k, flat.shape[1])
        fg_idx = torch.topk(fg_keys, n, dim=1).indices
        bg_idx = torch.topk(bg_keys, n, dim=1).indices
        count = torch.minimum(fg_pool.sum(dim=1), bg_pool.sum(dim=1)).clamp_max(k)
        valid = torch.arange(n, device=maps.device)[None, :] < count[:, None]
        if n < k:  # grids smaller than k: pad
            pad = k - n
            fg_idx = torch.cat([fg_idx, fg_idx[:, :1].expand(-1, pad)], dim=1)
            bg_idx = torch.cat([bg_idx, bg_idx[:, :1].expand(-1, pad)], dim=1)
            valid = torch.cat([valid, torch.zeros_like(valid[:, :1]).expand(-1, pad)], dim=1)
        return PseudoLabels(fg_idx, bg_idx, valid)
