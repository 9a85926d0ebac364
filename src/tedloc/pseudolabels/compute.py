"""Compute the pseudo-label maps of a split once, into a :class:`~tedloc.pseudolabels.map_cache.MapCache`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tedloc.data.video import frames_split
from tedloc.data.wsol_format import load_dataset
from tedloc.errors import TedlocError
from tedloc.models.localizer import LocalizationModel
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.pseudolabels.sources import map_source
from tedloc.utils.device import Runtime
from tedloc.utils.maps import minmax_rows

__all__ = ["compute_map_cache", "normalize_maps"]


def normalize_maps(maps: torch.Tensor) -> np.ndarray:
    """Per-map min-max to [0, 1]; constant or non-finite maps become all zeros (no pseudo-label)."""
    out, ok = minmax_rows(maps)
    out[~ok] = 0
    return out.reshape(maps.shape).float().cpu().numpy()


def compute_map_cache(model: LocalizationModel, data: str | os.PathLike, split: str, out: str | os.PathLike,
                      classes: str = "true", method: str = "cam", size: int | None = None, batch_size: int = 64,
                      workers: int = 0, *, runtime: Runtime, origin: str | os.PathLike = "",
                      model_record: dict | None = None) -> MapCache:
    """Maps of every image of ``split`` (for the true class, or ``classes="pred"``) at the model's eval view; of
    every frame of every shot for a video dataset's shot split (cache ids ``<shot>/<frame>``).

    ``method``: a registered map source (:mod:`tedloc.pseudolabels.sources`: ``cam``, stored at the feature
    resolution unless ``size`` is given; ``gradcam``, stored at ``size``, default a quarter of the
    input size; the training-free CLIP localizers of :mod:`tedloc.pseudolabels.clip_localizers`, at their patch grid).
    ``model`` runs on ``runtime`` (under ``torchrun`` the processes of
    ``runtime.dist`` share the images). ``origin``: what made the model
    (a run folder), recorded in the cache; ``model_record``: what the model is when it is no run (a
    training-free localizer's ``record()``), recorded too. Re-running reuses a complete cache; an
    interrupted one resumes with the missing rows.
    """
    from tedloc.engine.distributed import fill_rows, step_chunks

    if classes not in ("true", "pred"):
        raise TedlocError("classes must be 'true' or 'pred'")
    source_spec = map_source(method)
    where = str(origin) or (model_record or {}).get("localizer") or type(model).__name__
    source_spec.check(model, where)
    dist = runtime.dist
    model.to(runtime)  # the maps are made (and their precision recorded) on this runtime
    dataset_dir = load_dataset(data, splits=[split])
    if dataset_dir.class_names != model.class_names:
        raise TedlocError(f"{data} has other classes than the run {where} was trained on")
    target = dataset_dir[split]
    if target.shots:  # a video dataset's shots: a map for every frame of every shot
        target = frames_split(target)[0]
    pre = model.preprocessing
    dataset = pre.dataset(target)
    if size is None:
        size = source_spec.default_size(model)
    if size is None:
        probe = source_spec.maps(model, dataset[0]["image"][None], torch.zeros(1, dtype=torch.long))
        shape = tuple(int(s) for s in probe.shape[-2:])
    else:
        shape = (int(size), int(size))
    source = {"run": str(Path(origin).resolve()) if origin else "", "method": method, "classes": classes,
              "input_size": pre.input_size, "view": "eval", "precision": runtime.precision}
    if model_record:
        source["model"] = model_record
    cache = dist.on_main(lambda: MapCache(out, target.image_ids, shape, source))  # created (and locked) once
    if cache is None:
        cache = MapCache(out, target.image_ids, shape, source, shared=True)
    missing = cache.missing()
    if len(missing) == 0:
        return cache
    chunks, steps = step_chunks(missing.tolist(), batch_size, dist.rank, dist.world_size)
    loader = DataLoader(dataset, batch_sampler=chunks, num_workers=workers, **runtime.loader_options())

    def write(batch: dict) -> list[int]:
        labels = batch["label"] if classes == "true" else None
        maps = source_spec.maps(model, batch["image"], labels).float()
        if tuple(maps.shape[-2:]) != shape:
            maps = torch.nn.functional.interpolate(maps[:, None], size=shape, mode="bilinear",
                                                   align_corners=False)[:, 0]
        rows = batch["index"].numpy()
        cache.write(rows, normalize_maps(maps))
        return rows.tolist()

    fill_rows(cache, loader, steps, write, dist, desc=f"maps of {split}")
    return cache
