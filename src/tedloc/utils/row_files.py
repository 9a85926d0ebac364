"""Row-addressed files of the resumable caches: ``.npy`` arrays memory-mapped and filled in chunks,
and the flags of the rows already written (``done.npy``), saved atomically after each chunk."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tedloc.utils.io import atomic_write

__all__ = ["create_npy", "DoneRows"]


def create_npy(path: str | os.PathLike, dtype, shape: tuple[int, ...]) -> None:
    """Create a zero-filled ``.npy`` of ``shape``; it appears under its name only once complete."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    del array
    os.replace(partial, path)


class DoneRows:
    """The ``done.npy`` flags of a cache: created all False for ``n`` rows when missing, else loaded."""

    def __init__(self, path: str | os.PathLike, n: int | None = None):
        self.path = Path(path)
        if n is not None and not self.path.exists():
            self.flags = np.zeros(n, dtype=bool)
            self.save()
        else:
            self.flags = np.load(self.path)

    def save(self) -> None:
        with atomic_write(self.path, "wb") as f:
            np.save(f, self.flags)

    def mark(self, rows) -> None:
        """Flag ``rows`` as written (call after their data is flushed) and save the flags."""
        self.flags[rows] = True
        self.save()

    @property
    def complete(self) -> bool:
        return bool(self.flags.all())

    def missing(self) -> np.ndarray:
        return np.flatnonzero(~self.flags)
