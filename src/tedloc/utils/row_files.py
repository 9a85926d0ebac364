"""Row-addressed files of the resumable caches: ``.npy`` arrays memory-mapped and filled in chunks,
and the flags of the rows already written (``done.npy``), saved atomically after each chunk."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from tedloc.utils.io import atomic_write
from tedloc.utils.locks import PathLock

__all__ = ["create_npy", "DoneRows", "open_done_rows", "RowCache"]

_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _allocate(fd: int, offset: int, length: int) -> None:
    """Reserve ``length`` zero bytes at ``offset``: ``posix_fallocate``, else zeros written in chunks."""
    if length <= 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    if fallocate is not None:
        try:
            fallocate(fd, offset, length)
            return
        except OSError as e:
            if e.errno not in _NO_FALLOCATE:
                raise
    zeros = bytes(1 << 20)
    os.lseek(fd, offset, os.SEEK_SET)
    while length > 0:
        length -= os.write(fd, zeros[:min(length, len(zeros))])


def create_npy(path: str | os.PathLike, dtype, shape: tuple[int, ...]) -> None:
    """Create a zero-filled ``.npy`` of ``shape``; it appears under its name only once complete.

    Its blocks are allocated, not left sparse: a full disk fails here with an ``OSError`` naming
    ``path``, never later as a SIGBUS that kills the process writing into the memory map.
    """
    path, dtype = Path(path), np.dtype(dtype)
    partial = path.with_name(path.name + ".partial")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    try:
        with open(partial, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.flush()
            _allocate(f.fileno(), f.tell(), int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        os.replace(partial, path)
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


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
        """Write the flags to ``path`` (atomically)."""
        with atomic_write(self.path, "wb") as f:
            np.save(f, self.flags)

    def mark(self, rows) -> None:
        """Flag ``rows`` as written (call after their data is flushed) and save the flags."""
        self.flags[rows] = True
        self.save()

    @property
    def complete(self) -> bool:
        """Whether every row is done."""
        return bool(self.flags.all())

    def missing(self) -> np.ndarray:
        """The indices of the rows not done yet."""
        return np.flatnonzero(~self.flags)


def open_done_rows(path: str | os.PathLike, lock: PathLock) -> DoneRows:
    """The flags of an existing cache. An incomplete cache is about to be written: ``lock`` is taken
    first (a second writer is refused) and the flags are read again under it."""
    done = DoneRows(path)
    if not done.complete:
        lock.acquire()
        done = DoneRows(path)
    return done


class RowCache:
    """What the resumable caches share: their folder's lock, the done flags, and writing by several processes.

    Subclasses set ``root``, ``image_ids``, ``shared`` and ``_lock``, call :meth:`_open_flags` once their
    files exist, and store rows between :meth:`_begin_write` and :meth:`_end_write`. A ``shared`` cache
    is a helper process of a job whose first process holds the lock and marks the rows done.
    """

    root: Path
    image_ids: list[str]
    shared: bool
    _lock: PathLock

    def _open_flags(self) -> None:
        path = self.root / "done.npy"
        self.done_rows = DoneRows(path) if self.shared else open_done_rows(path, self._lock)
        self.done = self.done_rows.flags

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def complete(self) -> bool:
        """Whether every row of the cache is done."""
        return self.done_rows.complete

    def missing(self) -> np.ndarray:
        """The indices of the rows not done yet."""
        return self.done_rows.missing()

    def _begin_write(self) -> None:
        if not self.shared:
            self._lock.acquire()

    def _end_write(self, rows) -> None:
        """After the rows are flushed: mark them done (a shared helper process leaves that to the first)."""
        if not self.shared:
            self.mark(rows)

    def mark(self, rows) -> None:
        """Mark rows written (by any process of the job) as done; a complete cache is unlocked."""
        self.done_rows.mark(rows)
        if self.complete:
            self._lock.release()

    def reload_flags(self) -> None:
        """Read ``done.npy`` again (a helper process, after the first one marked the job's rows)."""
        self._open_flags()
