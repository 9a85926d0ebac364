"""DiPS's scored proposals of a split on disk: the top K boxes of every image, resumable, like the map cache.

Layout of a cache folder::

    CACHE/boxes.npy      (N, K, 4) int32, inclusive boxes x0, y0, x1, y1 in original image pixels; -1: no box
    CACHE/maps.npy       (N, K) int16: the index of the attention map each box came from (its activation map)
    CACHE/scores.npy     (N, K) float32: the classifier's confidence in each box
    CACHE/done.npy       (N,) bool: rows that are computed
    CACHE/index.json     image ids, K, and the settings that made the proposals

Rows are written in chunks; ``done.npy`` is saved after each chunk is flushed, so an interrupted
run resumes with the missing rows and never trusts a half-written one. A cache made with other
settings (encoder, heads, minimum size, K, classifier, ...) is refused, naming the first difference.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tedloc.errors import TedlocError
from tedloc.pseudolabels.proposals import Proposal
from tedloc.utils.io import atomic_write_text
from tedloc.utils.locks import folder_lock
from tedloc.utils.row_files import DoneRows, RowCache, create_npy

__all__ = ["ProposalCache", "top_k"]


def top_k(proposals: list[Proposal], scores: np.ndarray, k: int) -> tuple[list[Proposal], np.ndarray]:
    """The ``k`` proposals of highest score (ties: the earlier first) and their scores."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return [proposals[i] for i in order], np.asarray(scores, dtype=np.float32)[order]


def _first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} here, {b.get(key)!r} asked"
    return ""


class ProposalCache(RowCache):
    """Open (or create, with ``image_ids``, ``k`` and ``settings``) the proposal cache at ``root``.

    While it is incomplete the folder is locked: a second writer is refused.
    """

    def __init__(self, root: str | os.PathLike, image_ids: list[str] | None = None, k: int | None = None,
                 settings: dict | None = None, shared: bool = False):
        self.root = Path(root)
        self._lock = folder_lock(self.root)
        self.shared = shared
        index_path = self.root / "index.json"
        if not index_path.exists():
            if image_ids is None or k is None or shared:
                raise TedlocError(f"no proposal cache at {self.root}")
            if int(k) < 1:
                raise ValueError(f"K must be at least 1, got {k}")
            self._lock.acquire()
            if not index_path.exists():
                self._create(list(image_ids), int(k), settings or {})
        index = json.loads(index_path.read_text())
        if image_ids is not None and index["image_ids"] != list(image_ids):
            raise TedlocError(f"{self.root}: the cache holds other images (another split or dataset)")
        wanted = json.loads(json.dumps(settings)) if settings is not None else None
        if k is not None and index["k"] != k:
            raise TedlocError(f"{self.root}: the proposals were made with other settings (k: {index['k']} here, "
                              f"{k} asked)")
        if wanted is not None and index["settings"] != wanted:
            diff = _first_difference(index["settings"], wanted)
            raise TedlocError(f"{self.root}: the proposals were made with other settings ({diff})")
        self.index = index
        self.image_ids: list[str] = index["image_ids"]
        self.k = int(index["k"])
        self.settings = index["settings"]
        self.boxes = np.load(self.root / "boxes.npy", mmap_mode="r+")
        self.map_index = np.load(self.root / "maps.npy", mmap_mode="r+")
        self.scores = np.load(self.root / "scores.npy", mmap_mode="r+")
        self._open_flags()

    def _create(self, image_ids: list[str], k: int, settings: dict) -> None:
        n = len(image_ids)
        create_npy(self.root / "boxes.npy", np.int32, (n, k, 4))
        create_npy(self.root / "maps.npy", np.int16, (n, k))
        create_npy(self.root / "scores.npy", np.float32, (n, k))
        DoneRows(self.root / "done.npy", n)
        index = {"image_ids": image_ids, "k": k, "settings": json.loads(json.dumps(settings))}
        atomic_write_text(self.root / "index.json", json.dumps(index) + "\n")

    def write(self, rows: list[int], proposals: list[list[Proposal]], scores: list[np.ndarray]) -> None:
        """Store each row's proposals (at most K, best first) and scores, flush, then mark the rows done."""
        boxes = np.full((len(rows), self.k, 4), -1, dtype=np.int32)
        maps = np.full((len(rows), self.k), -1, dtype=np.int16)
        values = np.full((len(rows), self.k), np.nan, dtype=np.float32)
        for j, (found, score) in enumerate(zip(proposals, scores)):
            if len(found) > self.k:
                raise ValueError(f"{len(found)} proposals for a cache of K={self.k}")
            for i, p in enumerate(found):
                boxes[j, i], maps[j, i], values[j, i] = p.box, p.map_index, score[i]
        self._begin_write()
        self.boxes[rows], self.map_index[rows], self.scores[rows] = boxes, maps, values
        for array in (self.boxes, self.map_index, self.scores):
            array.flush()
        self._end_write(rows)

    def get(self, row: int) -> tuple[list[Proposal], np.ndarray]:
        """The proposals of ``row`` (best first) and their scores; asking for a row not computed is an error."""
        if not self.done[row]:
            raise TedlocError(f"{self.root}: proposals asked for a row not computed yet (finish the cache first)")
        valid = self.boxes[row, :, 0] >= 0
        found = [Proposal(tuple(int(v) for v in self.boxes[row, i]), int(self.map_index[row, i]))
                 for i in np.flatnonzero(valid)]
        return found, np.asarray(self.scores[row][valid], dtype=np.float32)
