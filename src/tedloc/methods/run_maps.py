"""Pseudo-label maps of a trained run: its localizer through a map source into a map cache (``tedloc cams``)."""
from __future__ import annotations

import os

from tedloc.methods.registry import load_model
from tedloc.pseudolabels.compute import compute_map_cache
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.utils.device import Runtime

__all__ = ["compute_run_map_cache"]


def compute_run_map_cache(run: str | os.PathLike, data: str | os.PathLike, split: str, out: str | os.PathLike,
                          *, runtime: Runtime, target_layer: str | None = None, **options) -> MapCache:
    """:func:`~tedloc.pseudolabels.compute.compute_map_cache` with the localizer of ``run`` (recorded as the maps'
    origin); ``options``: its ``classes``, ``method``, ``size``, ``batch_size`` and ``workers``; ``target_layer``:
    the module path of the post-hoc maps (Grad-CAM, Score-CAM, ...; None: the architecture's default)."""
    model = load_model(run, runtime=runtime, target_layer=target_layer)
    return compute_map_cache(model, data, split, out, runtime=runtime, origin=run, **options)
