"""A compact, resumable on-disk cache of pseudo-label maps, keyed by image id.

Layout of a cache folder::

    CACHE/maps.npy      (N, h, w) float16, memory-mapped; row i is the map of image i of the split
    CACHE/done.npy      (N,) bool: rows that are computed
    CACHE/index.json    image ids, split, map size, and the source (run, method, class used)

or, for maps of a size of their own per image (CLIP-ES at each image's native size: each map on its
own patch grid)::

    CACHE/maps.npy      (sum of h_i * w_i,) float16, memory-mapped: the maps one after the other
    CACHE/shapes.npy    (N, 2) int64: (h_i, w_i) of each image's map
    CACHE/index.json    as above, with ``"size": null`` and ``"layout": "per-image"``

Maps are stored min-max normalised to [0, 1] at a reduced resolution (a CAM's own feature
resolution by default); consumers resample them onto any grid through the same crop and flip
as the image (``View.map``: a map of any size covers the whole image). Any pseudo-label source (CAM, Grad-CAM, CLIP-ES, DiPS proposals)
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

    Created with ``size`` (every map ``(h, w)``) or ``shapes`` (``(N, 2)``: the ``(h, w)`` of each image's map).
    :attr:`size` is the maps' shape, or for per-image shapes the largest ``(h, w)``; :attr:`shapes` is None, or
    the per-image shapes. While it is incomplete (being created or written) the folder is locked: a second
    writer is refused.
    """

    def __init__(self, root: str | os.PathLike, image_ids: list[str] | None = None, size: tuple[int, int] | None = None,
                 source: dict | None = None, shared: bool = False, *, shapes: np.ndarray | None = None):
        if size is not None and shapes is not None:
            raise TedlocError("a map cache has one size or per-image shapes, not both")
        if shapes is not None:
            shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
            if image_ids is not None and len(shapes) != len(image_ids):
                raise TedlocError(f"{len(shapes)} map shapes for {len(image_ids)} images")
            if len(shapes) and shapes.min() < 1:
                raise TedlocError("map shapes must be positive")
        self.root = Path(root)
        self._lock = folder_lock(self.root)
        self.shared = shared  # a helper process of a job whose first process holds the lock and marks rows
        index_path = self.root / "index.json"
        if not index_path.exists():
            if image_ids is None or (size is None and shapes is None) or shared:
                raise TedlocError(f"no map cache at {self.root}")
            self._lock.acquire()
            if not index_path.exists():  # not made meanwhile by a writer that has finished
                self._create(image_ids, size, shapes, source)
        index = json.loads(index_path.read_text())
        if image_ids is not None and index["image_ids"] != list(image_ids):
            raise TedlocError(f"{self.root}: the cache holds other images (another split or dataset)")
        if source is not None and index["source"] != source:
            raise TedlocError(f"{self.root}: the cache was made from another source: {index['source']}")
        per_image = index.get("layout") == "per-image"
        self.shapes: np.ndarray | None = np.load(self.root / "shapes.npy") if per_image else None
        if size is not None and (per_image or tuple(index["size"]) != tuple(size)):
            held = "maps of a size per image" if per_image else f"{index['size']} maps"
            raise TedlocError(f"{self.root}: the cache holds {held}, not {list(size)}")
        if shapes is not None and (not per_image or not np.array_equal(self.shapes, shapes)):
            held = "maps of other sizes" if per_image else f"{index['size']} maps"
            raise TedlocError(f"{self.root}: the cache holds {held}, not the per-image shapes asked for")
        self.index = index
        self.image_ids: list[str] = index["image_ids"]
        if per_image:
            self.size = tuple(int(v) for v in self.shapes.max(axis=0)) if len(self.shapes) else (0, 0)
            ends = np.cumsum(self.shapes.prod(axis=1))
            self._offsets = np.concatenate([[0], ends])
        else:
            self.size = tuple(index["size"])
        self.source = index["source"]
        self._row = {image_id: i for i, image_id in enumerate(self.image_ids)}
        self.maps = np.load(self.root / "maps.npy", mmap_mode="r+")
        self._open_flags()

    def _create(self, image_ids: list[str], size: tuple[int, int] | None, shapes: np.ndarray | None,
                source: dict | None) -> None:
        index = {"image_ids": list(image_ids), "size": None if size is None else list(size), "source": source or {},
                 "dtype": "float16"}
        if shapes is not None:
            index["layout"] = "per-image"
            np.save(self.root / "shapes.npy", shapes)
            create_npy(self.root / "maps.npy", np.float16, (int(shapes.prod(axis=1).sum()),))
        else:
            create_npy(self.root / "maps.npy", np.float16, (len(image_ids), *size))
        DoneRows(self.root / "done.npy", len(image_ids))
        atomic_write_text(self.root / "index.json", json.dumps(index) + "\n")

    def shape(self, row: int) -> tuple[int, int]:
        """The ``(h, w)`` of the map of ``row``."""
        return self.size if self.shapes is None else tuple(int(v) for v in self.shapes[row])

    def write(self, rows: np.ndarray, maps) -> None:
        """Store normalised maps for ``rows`` (an array ``(B, h, w)``, or a list of ``(h_i, w_i)`` arrays), flush
        them, then mark them done (a shared helper process leaves marking to the first)."""
        rows = np.asarray(rows).reshape(-1)
        if len(maps) != len(rows):
            raise ValueError(f"{len(maps)} maps for {len(rows)} rows")
        maps = [np.asarray(m, dtype=np.float32) for m in maps]
        for row, m in zip(rows, maps):
            if m.shape != self.shape(row):
                raise ValueError(f"a map of shape {m.shape} for row {row}, whose maps are {self.shape(row)}")
        self._begin_write()
        if self.shapes is None:
            if maps:
                self.maps[rows] = np.stack(maps).astype(np.float16)
        else:
            for row, m in zip(rows, maps):
                self.maps[self._offsets[row]:self._offsets[row + 1]] = m.astype(np.float16).reshape(-1)
        self.maps.flush()
        self._end_write(rows)

    def row(self, image_id: str) -> int:
        """The row of ``image_id`` in the cache (KeyError if absent)."""
        return self._row[image_id]

    def get(self, rows) -> torch.Tensor | list[torch.Tensor]:
        """Maps of ``rows`` as float32: a tensor ``(N, h, w)``, or for per-image shapes a list of ``(h_i, w_i)``
        tensors; asking for a row not computed is an error."""
        rows = np.asarray(rows).reshape(-1)
        if not self.done[rows].all():
            raise TedlocError(f"{self.root}: maps requested for rows not computed yet (run `tedloc cams` to finish)")
        if self.shapes is None:
            return torch.from_numpy(np.asarray(self.maps[rows], dtype=np.float32))
        return [torch.from_numpy(np.asarray(self.maps[self._offsets[r]:self._offsets[r + 1]], dtype=np.float32)
                                 .reshape(self.shape(r))) for r in rows]
