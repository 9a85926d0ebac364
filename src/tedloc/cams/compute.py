"""Compute the pseudo-label maps of a split once, into a :class:`~tedloc.cams.cache.MapCache`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tedloc.cams.cache import MapCache
from tedloc.data.wsol_format import load_dataset
from tedloc.errors import TedlocError
from tedloc.utils.device import Runtime
from tedloc.utils.maps import minmax_rows

__all__ = ["compute_map_cache", "normalize_maps", "MAP_SOURCES"]


def _cam(localizer, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    return localizer.cams(images, classes)


def _gradcam(localizer, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    from tedloc.cams.gradcam import grad_cams

    images = images.to(localizer.device)
    if classes is None:
        with torch.no_grad():
            classes = localizer.model(images).argmax(dim=1)
    return grad_cams(localizer.model, images, classes)


# name -> fn(localizer, normalised images, classes or None for the predicted ones) -> maps (B, h, w)
MAP_SOURCES = {"cam": _cam, "gradcam": _gradcam}


def normalize_maps(maps: torch.Tensor) -> np.ndarray:
    """Per-map min-max to [0, 1]; constant or non-finite maps become all zeros (no pseudo-label)."""
    out, ok = minmax_rows(maps)
    out[~ok] = 0
    return out.reshape(maps.shape).float().cpu().numpy()


def compute_map_cache(run: str | os.PathLike, data: str | os.PathLike, split: str, out: str | os.PathLike,
                      classes: str = "true", method: str = "cam", size: int | None = None, batch_size: int = 64,
                      workers: int = 0, runtime: Runtime | None = None) -> MapCache:
    """Maps of every image of ``split`` (for the true class, or ``classes="pred"``) at the eval view.

    ``method``: ``cam`` (stored at the feature resolution unless ``size`` is given) or ``gradcam``
    (stored at ``size``, default a quarter of the input size). Re-running reuses a complete
    cache; an interrupted one resumes with the missing rows. ``runtime``: device and precision
    (default: the CPU in fp32); under ``torchrun`` the processes share the images.
    """
    from tedloc.data import EvalTransform, WSOLImageDataset
    from tedloc.engine.distributed import Distributed, fill_rows, step_chunks
    from tedloc.methods import load_model

    if classes not in ("true", "pred"):
        raise TedlocError("classes must be 'true' or 'pred'")
    if method not in MAP_SOURCES:
        raise TedlocError(f"unknown map method {method!r}; choose from {', '.join(MAP_SOURCES)}")
    source_fn = MAP_SOURCES[method]
    dist, runtime = Distributed.from_env(runtime or Runtime())
    localizer = load_model(run, runtime=runtime)
    if not hasattr(localizer, "cams"):
        raise TedlocError(f"{run}: this kind of run cannot produce class-conditional maps")
    dataset_dir = load_dataset(data, splits=[split])
    if dataset_dir.class_names != localizer.class_names:
        raise TedlocError(f"{data} has other classes than the run {run} was trained on")
    target = dataset_dir[split]
    dataset = WSOLImageDataset(target, EvalTransform(localizer.input_size), mean=localizer.mean, std=localizer.std)
    if size is None and method == "gradcam":
        size = max(1, localizer.input_size // 4)
    if size is None:
        probe = localizer.cams(dataset[0]["image"][None], torch.zeros(1, dtype=torch.long))
        shape = tuple(int(s) for s in probe.shape[-2:])
    else:
        shape = (int(size), int(size))
    source = {"run": str(Path(run).resolve()), "method": method, "classes": classes,
              "input_size": localizer.input_size, "view": "eval", "precision": runtime.precision}
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
        maps = source_fn(localizer, batch["image"], labels).float()
        if tuple(maps.shape[-2:]) != shape:
            maps = torch.nn.functional.interpolate(maps[:, None], size=shape, mode="bilinear", align_corners=False)[:, 0]
        rows = batch["index"].numpy()
        cache.write(rows, normalize_maps(maps))
        return rows.tolist()

    fill_rows(cache, loader, steps, write, dist, desc=f"maps of {split}")
    return cache
