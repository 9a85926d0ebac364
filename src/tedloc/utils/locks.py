"""One writer at a time for a run folder, a cache or an output file, across processes.

A lock is an ``fcntl.flock`` on a lock file (``FOLDER/.lock``, or ``.NAME.lock`` beside a file),
held through an open file descriptor: the kernel releases it when the holder closes it or dies,
however it dies, so there is never a stale lock to clean up. The holder writes its pid into the
file, which a refused process names. The lock file itself stays (removing it would let two
processes lock two different files of one name).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from tedloc.errors import TedlocError

__all__ = ["PathLock", "folder_lock", "file_lock"]

_logger = logging.getLogger(__name__)
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class PathLock:
    """An exclusive lock on ``target`` through ``lock_file``; a context manager, or ``acquire``/``release``.

    ``acquire`` is idempotent; a lock held by another process (or another ``PathLock`` of this one)
    raises :class:`TedlocError` ``"<target> is in use by another tedloc process (pid N)"``.
    """

    def __init__(self, lock_file: str | os.PathLike, target: str | os.PathLike):
        self.lock_file, self.target = Path(lock_file), Path(target)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> "PathLock":
        """Take the lock (nothing to do when already held) and record this pid in the lock file; returns ``self``."""
        if self.held:
            return self
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            _flock(fd, self.target)
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # the pid only helps the message of a refused process
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Close the lock file: the lock is released once no forked child (loader worker) holds a copy."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "PathLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # a pickled copy (a spawned worker's) holds nothing


def _flock(fd: int, target: Path) -> None:
    """Lock ``fd`` exclusively, or raise the error naming the holder; where locks are unsupported, warn."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise TedlocError(f"{target} is in use by another tedloc process{pid}") from None
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        _logger.warning("%s: no file locks here; nothing stops a second writer", target)


def folder_lock(folder: str | os.PathLike) -> PathLock:
    """The lock of a run or cache folder: ``FOLDER/.lock`` (the folder is created on acquiring)."""
    return PathLock(Path(folder) / ".lock", folder)


def file_lock(path: str | os.PathLike) -> PathLock:
    """The lock of an output file: ``.NAME.lock`` beside it."""
    path = Path(path)
    return PathLock(path.with_name(f".{path.name}.lock"), path)
