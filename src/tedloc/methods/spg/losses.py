"""SPG's seed masks and auxiliary losses, as wsolevaluation computes them.

Every map is first upsampled (bilinear) to the input's size. A seed mask of a map in [0, 1] marks foreground (1)
where the map exceeds ``high`` (when fewer than 30 pixels of an image do, where it exceeds 0.7 times the image's
maximum instead), background (0) where it is below ``low`` (background wins), and ignores (255) the rest. Three
binary cross-entropies over the seeded pixels are added to the classification loss: B2's logits against the seeds
of the min-max normalised class map (``1h``/``1l``), B1's against the seeds of B2's sigmoid (``2h``/``2l``), C's
against the seeds of the mean of B1's and B2's sigmoids (``3h``/``3l``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tedloc.engine import LossTerm
from tedloc.methods.cam_variants import min_max

__all__ = ["IGNORE", "MIN_FOREGROUND", "seed_mask", "seeded_bce", "spg_loss_terms"]

IGNORE = 255.0  # the seed mask's value of pixels no loss sees
MIN_FOREGROUND = 30  # fewer foreground pixels than this: the threshold becomes 0.7 of the image's maximum


def seed_mask(attention: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """The seed mask (B, 1, H, W) of ``attention`` (B, 1, H, W) in [0, 1]: 1, 0 or :data:`IGNORE` (see the module)."""
    fg = attention > high
    few = fg.flatten(1).sum(1) < MIN_FOREGROUND
    relative = attention > 0.7 * attention.flatten(1).amax(1).view(-1, 1, 1, 1)
    fg = torch.where(few.view(-1, 1, 1, 1), relative, fg)
    mask = torch.full_like(attention, IGNORE)
    mask[fg] = 1.0
    mask[attention < low] = 0.0
    return mask


def seeded_bce(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the sum of the binary cross-entropies of ``logits`` against ``mask`` over its seeded pixels, their count)."""
    seeded = mask < IGNORE
    loss = F.binary_cross_entropy_with_logits(logits.float()[seeded], mask[seeded].float(), reduction="sum")
    return loss, int(seeded.sum())


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)


def spg_loss_terms(out: dict[str, torch.Tensor], size: tuple[int, int],
                   thresholds: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
                   ) -> dict[str, LossTerm]:
    """The auxiliary terms ``spg_b2``, ``spg_b1``, ``spg_c`` of an :class:`~tedloc.methods.spg.SPGNetwork` output
    at the input ``size``, each the mean over its seeded pixels; ``thresholds``: ((1h, 1l), (2h, 2l), (3h, 3l))."""
    (h1, l1), (h2, l2), (h3, l3) = thresholds
    with torch.no_grad():
        attention = min_max(_up(out["class_map"].detach(), size))
        b1, b2 = torch.sigmoid(_up(out["b1"].detach(), size)), torch.sigmoid(_up(out["b2"].detach(), size))
        masks = {"spg_b2": seed_mask(attention, h1, l1), "spg_b1": seed_mask(b2, h2, l2),
                 "spg_c": seed_mask((b1 + b2) / 2.0, h3, l3)}
    logits = {"spg_b2": out["b2"], "spg_b1": out["b1"], "spg_c": out["c"]}
    terms = {}
    for name, mask in masks.items():
        total, count = seeded_bce(_up(logits[name], size), mask)
        terms[name] = LossTerm(total, count)
    return terms
