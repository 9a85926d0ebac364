"""A compact, resumable on-disk cache of pseudo-label maps, keyed by image id.

Layout of a cache folder::

    CACHE/maps.npy      (N, h, w) float16, memory-mapped; row i is the map of image i of the split
    CACHE/done.npy      (N,) bool: rows that are computed
    CACHE/index.json    image ids, split, map size, and the source (run, method, class used)

Maps are stored min-max normalised to [0, 1] at a reduced resolution (a CAM's own feature
resolution by default); consumers resample them onto any grid through the same crop and flip
as the image (``View.map``). Any pseudo-label source (CAM, Grad-CAM, CLIP-ES, DiPS proposals)
writes this format, so the trainers never depend on where the maps come from. Rows are
written in chunks; ``done.npy`` is updated after each chunk is flushed, so an interrupted run
resumes where it stopped and never trusts a half-written row.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import folder_lock
from tedloc.utils.row_files import DoneRows, RowCache, create_npy

__all__ = ["MapCache"]


class MapCache(RowCache):
    """Open (or create) a map cache for the image ids of one split.

    While it is incomplete (being created or written) the folder is locked: a second writer is refused.
    """

    def __init__(self, root: str | os.PathLike, image_ids: list[str] | None = None, size: tuple[int, int] | None = None,
                 source: dict | None = None, shared: bool = False):
        self.root = Path(root)
        self._lock = folder_lock(self.root)
        self.shared = shared  # a helper process of a job whose first process holds the lock and marks rows
        index_path = self.root / "index.json"
        if not index_path.exists():
            if image_ids is None or size is None or shared:
                raise TedlocError(f"no map cache at {self.root}")
            self._lock.acquire()
            if not index_path.exists():  # not made meanwhile by a writer that has finished
                self._create(image_ids, size, source)
        index = json.loads(index_path.read_text())
        if image_ids is not None and index["image_ids"] != list(image_ids):
            raise TedlocError(f"{self.root}: the cache holds other images (another split or dataset)")
        if source is not None and index["source"] != source:
            raise TedlocError(f"{self.root}: the cache was made from another source: {index['source']}")
        if size is not None and tuple(index["size"]) != tuple(size):
            raise TedlocError(f"{self.root}: the cache holds {index['size']} maps, not {list(size)}")
        self.index = index
        self.image_ids: list[str] = index["image_ids"]
        self.size = tuple(index["size"])
        self.source = index["source"]
        self._row = {image_id: i for i, image_id in enumerate(self.image_ids)}
        self.maps = np.load(self.root / "maps.npy", mmap_mode="r+")
        self._open_flags()

    def _create(self, image_ids: list[str], size: tuple[int, int], source: dict | None) -> None:
        index = {"image_ids": list(image_ids), "size": list(size), "source": source or {}, "dtype": "float16"}
        create_npy(self.root / "maps.npy", np.float16, (len(image_ids), *size))
        DoneRows(self.root / "done.npy", len(image_ids))
        atomic_write_text(self.root / "index.json", json.dumps(index) + "\n")

    def write(self, rows: np.ndarray, maps: np.ndarray) -> None:
        """Store normalised maps for ``rows``, flush them, then mark them done (a shared helper process
        leaves marking to the first)."""
        maps = np.asarray(maps, dtype=np.float32)
        if maps.shape[1:] != self.size:
            raise ValueError(f"maps of shape {maps.shape[1:]} for a cache of {self.size}")
        self._begin_write()
        self.maps[rows] = maps.astype(np.float16)
        self.maps.flush()
        self._end_write(rows)

    def row(self, image_id: str) -> int:
        """The row of ``image_id`` in the cache (KeyError if absent)."""
        return self._row[image_id]

    def get(self, rows) -> torch.Tensor:
        """Maps of ``rows`` as float32 tensors (N, h, w); asking for a row not computed is an error."""
        rows = np.asarray(rows).reshape(-1)
        if not self.done[rows].all():
            raise TedlocError(f"{self.root}: maps requested for rows not computed yet (run `tedloc cams` to finish)")
        return torch.from_numpy(np.asarray(self.maps[rows], dtype=np.float32))
