"""Compute the pseudo-label maps of a split once, into a :class:`~tedloc.pseudolabels.map_cache.MapCache`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tedloc.data.images import read_image_size
from tedloc.data.torch_dataset import WSOLImageDataset
from tedloc.data.video import frames_split
from tedloc.data.wsol_format import load_dataset
from tedloc.errors import TedlocError
from tedloc.models.localizer import LocalizationModel
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.pseudolabels.sources import map_source
from tedloc.utils.device import Runtime
from tedloc.utils.maps import minmax_rows

__all__ = ["compute_map_cache", "normalize_maps", "size_batches"]


def normalize_maps(maps: torch.Tensor) -> np.ndarray:
    """Per-map min-max to [0, 1]; constant or non-finite maps become all zeros (no pseudo-label)."""
    out, ok = minmax_rows(maps)
    out[~ok] = 0
    return out.reshape(maps.shape).float().cpu().numpy()


def size_batches(rows: list[int], sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """``rows`` in batches of at most ``batch_size`` whose ``sizes`` (one per row) are equal: the rows of each size
    in their order, the sizes in the order they first come."""
    groups: dict[tuple[int, int], list[int]] = {}
    for row, size in zip(rows, sizes):
        groups.setdefault(tuple(size), []).append(row)
    return [group[k:k + batch_size] for group in groups.values() for k in range(0, len(group), batch_size)]


def compute_map_cache(model: LocalizationModel, data: str | os.PathLike, split: str, out: str | os.PathLike,
                      classes: str = "true", method: str = "cam", size: int | None = None, batch_size: int = 64,
                      workers: int = 0, *, runtime: Runtime, origin: str | os.PathLike = "",
                      model_record: dict | None = None) -> MapCache:
    """Maps of every image of ``split`` (for the true class, or ``classes="pred"``) at the model's eval view; of
    every frame of every shot for a video dataset's shot split (cache ids ``<shot>/<frame>``).

    ``method``: a registered map source (:mod:`tedloc.pseudolabels.sources`: ``cam``, stored at the feature
    resolution unless ``size`` is given; ``gradcam``, stored at ``size``, default a quarter of the
    input size; the training-free CLIP localizers of :mod:`tedloc.pseudolabels.clip_localizers`, at their patch grid).
    A localizer whose ``cache_transform()`` gives a view (CLIP-ES's ``native`` resolution) sees each image
    through it, images of one size in a batch, and its maps are stored on their own patch grid (a per-image
    :class:`MapCache`) unless ``size`` is given; the view is recorded in the cache's source.
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
    native = getattr(model, "cache_transform", lambda: None)()
    dataset = WSOLImageDataset(target, pre, transform=native)
    if size is None:
        size = source_spec.default_size(model)
    view_sizes = shapes = shape = None
    if native is not None:
        view_sizes = [native.size(_image_size(target, i)) for i in range(len(target))]
        if size is None:  # each map on its own patch grid
            shapes = np.array([(h // native.multiple, w // native.multiple) for w, h in view_sizes], dtype=np.int64)
    if size is not None:
        shape = (int(size), int(size))
    elif shapes is None:
        probe = source_spec.maps(model, dataset[0]["image"][None], torch.zeros(1, dtype=torch.long))
        shape = tuple(int(s) for s in probe.shape[-2:])
    source = {"run": str(Path(origin).resolve()) if origin else "", "method": method, "classes": classes,
              "input_size": pre.input_size, "view": "eval", "precision": runtime.precision}
    if native is not None:
        source.update(input_size=None, view="native", multiple=native.multiple, max_side=native.max_side)
    if model_record:
        source["model"] = model_record
    # created (and locked) once
    cache = dist.on_main(lambda: MapCache(out, target.image_ids, shape, source, shapes=shapes))
    if cache is None:
        cache = MapCache(out, target.image_ids, shape, source, shared=True, shapes=shapes)
    missing = cache.missing()
    if len(missing) == 0:
        return cache
    if view_sizes is None:
        chunks, steps = step_chunks(missing.tolist(), batch_size, dist.rank, dist.world_size)
    else:  # the images of one size in a batch
        batches = size_batches(missing.tolist(), [view_sizes[i] for i in missing], batch_size)
        chunks, steps = batches[dist.rank::dist.world_size], -(-len(batches) // dist.world_size)
    loader = DataLoader(dataset, batch_sampler=chunks, num_workers=workers, **runtime.loader_options())

    def write(batch: dict) -> list[int]:
        labels = batch["label"] if classes == "true" else None
        maps = source_spec.maps(model, batch["image"], labels).float()
        rows = batch["index"].numpy()
        want = shape or cache.shape(int(rows[0]))
        if tuple(maps.shape[-2:]) != want:
            maps = torch.nn.functional.interpolate(maps[:, None], size=want, mode="bilinear",
                                                   align_corners=False)[:, 0]
        cache.write(rows, normalize_maps(maps))
        return rows.tolist()

    fill_rows(cache, loader, steps, write, dist, desc=f"maps of {split}")
    return cache


def _image_size(split, i: int) -> tuple[int, int]:
    """``(width, height)`` of image ``i`` of ``split``: its metadata's, or its file header's where unknown."""
    w, h = (int(v) for v in split.sizes[i])
    return (w, h) if w > 0 and h > 0 else read_image_size(split.image_path(i))
