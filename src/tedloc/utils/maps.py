"""Per-map min-max normalisation of batches, with the rule for maps that carry no ranking."""
from __future__ import annotations

import torch

__all__ = ["minmax_rows"]


def minmax_rows(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map (B, ...) flattened and min-max normalised to [0, 1] in float64, and which rows are usable.

    A constant map or one with NaN/inf is not usable (``ok`` False); its row holds finite junk that
    callers replace or ignore.
    """
    flat = maps.reshape(maps.shape[0], -1).double()
    finite = torch.isfinite(flat)
    safe = torch.where(finite, flat, torch.zeros_like(flat))
    lo, hi = safe.min(dim=1, keepdim=True).values, safe.max(dim=1, keepdim=True).values
    ok = finite.all(dim=1) & (hi > lo).squeeze(1)
    return (safe - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)), ok
