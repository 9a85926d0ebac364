"""Features of a frozen encoder, computed once per image view and memory-mapped.

E is frozen in TeD-Loc, so its output for a given view of an image never changes. A feature
cache fixes ``num_views`` random training views per image (drawn by the training transform
from ``(seed, view, image)``), computes E once for each, and stores::

    CACHE/features.npy  (N, V, C, h, w) float16, memory-mapped
    CACHE/views.npy     (N, V, 9) int64: the geometry of each view (``View.to_tensor``)
    CACHE/done.npy      (N,) bool: images whose views are written
    CACHE/index.json    image ids, encoder (name + SHA-1 of its weights), transform, seed, shape

Each epoch then draws one of the V cached views per image, so epochs after the building pass
cost only the decoder. The price is augmentation: V fixed crops/flips per image instead of a
fresh one every epoch (documented in docs/TEDLOC.md). Building is resumable (rows are flushed
before ``done.npy`` is updated); a cache made by another encoder, transform or split is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tedloc.data.dataset import Split
from tedloc.data.preprocessing import Preprocessing
from tedloc.data.torch_dataset import load_sample_image
from tedloc.engine.distributed import fill_rows, step_chunks
from tedloc.errors import TedlocError
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import folder_lock
from tedloc.utils.row_files import DoneRows, RowCache, create_npy

__all__ = ["FeatureCache", "build_feature_cache", "CachedFeatureDataset", "encoder_fingerprint"]

_VIEW_STREAM = 0x5EED  # keeps the cached views' random stream apart from the per-epoch one


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-1 of an encoder's weights and buffers (names, shapes, values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class FeatureCache(RowCache):
    """Open an existing cache (``index`` given: create it if missing, refuse it if it differs).

    While it is incomplete (being created or written) the folder is locked: a second writer is refused.
    """

    def __init__(self, root: str | os.PathLike, index: dict | None = None, shared: bool = False):
        self.root = Path(root)
        self._lock = folder_lock(self.root)
        self.shared = shared  # a helper process of a job whose first process holds the lock and marks rows
        path = self.root / "index.json"
        if not path.exists():
            if index is None or shared:
                raise TedlocError(f"no feature cache at {self.root}")
            self._lock.acquire()
            if not path.exists():  # not made meanwhile by a writer that has finished
                self._create(index)
        stored = json.loads(path.read_text())
        if index is not None and stored != index:
            diff = sorted(k for k in set(stored) | set(index) if stored.get(k) != index.get(k))
            raise TedlocError(f"{self.root}: a feature cache of another setting ({', '.join(diff)} differ); "
                              f"use another folder or delete it")
        self.index = index = stored
        self.image_ids: list[str] = index["image_ids"]
        self.num_views: int = index["num_views"]
        self.features = np.load(self.root / "features.npy", mmap_mode="r+")
        self.views = np.load(self.root / "views.npy", mmap_mode="r+")
        self._open_flags()

    def _create(self, index: dict) -> None:
        n, v = len(index["image_ids"]), index["num_views"]
        create_npy(self.root / "features.npy", np.float16, (n, v, *index["feature_shape"]))
        create_npy(self.root / "views.npy", np.int64, (n, v, 9))
        DoneRows(self.root / "done.npy", n)
        atomic_write_text(self.root / "index.json", json.dumps(index) + "\n")

    def write(self, rows: np.ndarray, features: np.ndarray, views: np.ndarray) -> None:
        """Store and flush ``rows``, then mark them done (a shared helper process leaves marking to the first)."""
        self._begin_write()
        self.features[rows] = features.astype(np.float16)
        self.views[rows] = views
        self.features.flush()
        self.views.flush()
        self._end_write(rows)


class _ViewsDataset(Dataset):
    """All V cached views of image i: images (V, 3, S, S) and view tensors (V, 9)."""

    def __init__(self, split: Split, preprocessing: Preprocessing, num_views: int, seed: int):
        self.split, self.preprocessing, self.num_views, self.seed = split, preprocessing, num_views, seed
        self.transform = preprocessing.train_transform()

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        image = load_sample_image(self.split.image_path(i))
        images, views = [], []
        for v in range(self.num_views):
            view = self.transform.view(image.size, np.random.default_rng([self.seed, _VIEW_STREAM, v, i]))
            images.append(self.preprocessing.view_input(view, image))
            views.append(view.to_tensor())
        return {"images": torch.stack(images), "views": torch.stack(views), "index": i}


def build_feature_cache(encoder, split: Split, preprocessing: Preprocessing, root: str | os.PathLike,
                        num_views: int = 2, seed: int = 0, batch_size: int = 64, workers: int = 0,
                        *, runtime: Runtime) -> FeatureCache:
    """Compute (or finish, or reuse) the feature cache of ``encoder`` over the views of ``split``.

    The views are ``preprocessing``'s training views (the model's record). E runs on ``runtime``'s device
    and precision (features are stored in fp16 either way). Under
    ``torchrun`` the processes share the missing images: each writes its own rows, the first one
    creates the cache and marks the rows done.
    """
    if num_views < 1:
        raise TedlocError("a feature cache needs at least one view per image")
    info = encoder.info
    transform = preprocessing.train_transform()
    size = transform.input_size
    encoder.eval()
    with torch.no_grad(), runtime.autocast():
        shape = tuple(int(s) for s in encoder(torch.zeros(1, 3, size, size, device=runtime.device)).shape[1:])
    index = {"image_ids": list(split.image_ids), "split": split.name, "num_views": int(num_views), "seed": int(seed),
             "encoder": info.name, "encoder_sha1": encoder_fingerprint(encoder), "transform": asdict(transform),
             "feature_shape": list(shape), "mean": list(preprocessing.mean), "std": list(preprocessing.std),
             "dtype": "float16", "precision": runtime.precision}  # E in bf16 gives other features than in fp32
    if preprocessing.interpolation != "bilinear":  # recorded when not the default, so older caches stay valid
        index["interpolation"] = preprocessing.interpolation
    dist = runtime.dist
    cache = dist.on_main(lambda: FeatureCache(root, index))  # the first process creates (and locks) it
    if cache is None:
        cache = FeatureCache(root, index, shared=True)
    missing = cache.missing()
    if len(missing) == 0:
        return cache
    dataset = _ViewsDataset(split, preprocessing, num_views, seed)
    chunks, steps = step_chunks(missing.tolist(), max(1, batch_size // num_views), dist.rank, dist.world_size)
    loader = DataLoader(dataset, batch_sampler=chunks, num_workers=workers, **runtime.loader_options())

    def write(batch: dict) -> list[int]:
        images = runtime.to_device(batch["images"])
        with torch.no_grad(), runtime.autocast():
            feats = encoder(images.flatten(0, 1)).float().cpu()
        rows = batch["index"].numpy()
        cache.write(rows, feats.reshape(len(rows), num_views, *shape).numpy(), batch["views"].numpy())
        return rows.tolist()

    fill_rows(cache, loader, steps, write, dist, desc=f"features of {split.name}")
    return cache


class CachedFeatureDataset(Dataset):
    """Training samples from a complete cache: one of the V views per image, drawn from (seed, epoch, i).

    Returns ``features`` (C, h, w) float32, ``label``, ``index`` and ``view`` like
    :class:`~tedloc.data.WSOLImageDataset` returns ``image``.
    """

    def __init__(self, cache: FeatureCache, labels: np.ndarray, seed: int = 0):
        if not cache.complete:
            raise TedlocError(f"{cache.root}: the feature cache is incomplete")
        self.cache, self.labels, self.seed, self.epoch = cache, np.asarray(labels), seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the views of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict:
        v = int(np.random.default_rng([self.seed, self.epoch, i]).integers(self.cache.num_views))
        return {"features": torch.from_numpy(self.cache.features[i, v].astype(np.float32)),
                "label": int(self.labels[i]), "index": i, "view": torch.from_numpy(np.array(self.cache.views[i, v]))}
