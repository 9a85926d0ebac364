"""Atomic writes (a reader never sees a half-written file, an interrupted write leaves no debris) and a fast
``.npy`` reader for folders of many small arrays."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import weakref
from pathlib import Path
from typing import IO, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_write_text", "check_writable", "read_npy", "NpyBuffer"]


def _name_file(e: OSError, path: Path, tmp: Path | None = None) -> OSError:
    """``e`` naming ``path``, where it names no file (a failed write) or the temporary file."""
    if e.filename is None or (tmp is not None and e.filename == str(tmp)):
        e.filename, e.filename2 = str(path), None
    return e


def _new_temp_file(path: Path) -> Path:
    """A new empty file beside ``path``, made with mode 0o666 so that the umask (or the folder's default
    ACL) applies as to any new file; ``tempfile.mkstemp`` would make it 0o600 whatever the umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        except OSError as e:
            raise _name_file(e, path, tmp)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    An ``OSError`` (full disk, read-only folder, ...) names ``path`` and leaves no temporary file.
    """
    path = Path(path)
    tmp = None
    try:
        make_parent(path)
        tmp = _new_temp_file(path)
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise _name_file(e, path, tmp)
        raise


def make_parent(path: Path) -> None:
    """Create the folder of ``path``; where a file stands in the way, an ``OSError`` naming ``path`` says which."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"cannot create its folder: {blocker} is a file",
                                 str(path)) from None


def check_writable(path: str | os.PathLike) -> None:
    """Raise now the ``OSError`` that writing ``path`` would meet (folder not writable, read-only disk),
    not after hours of work; its folder is created."""
    path = Path(path)
    make_parent(path)
    os.unlink(_new_temp_file(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool, int]] = {}
_NPY_MAGIC = b"\x93NUMPY"


class NpyBuffer:
    """A read buffer that :func:`read_npy` reuses as long as no array read into it is still in use.

    Reading thousands of same-size maps then allocates nothing per file. An array still referenced
    (or any view of it) keeps its bytes: the next read goes to a new buffer, never over them.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._lent: weakref.ref | None = None  # the last array read into _data

    def view(self, size: int) -> memoryview:
        """``size`` writable bytes that no live array uses."""
        if len(self._data) < size or (self._lent is not None and self._lent() is not None):
            self._data = bytearray(size)  # a new one: the old one may still back an array
        self._lent = None
        return memoryview(self._data)[:size]

    def lend(self, array: np.ndarray) -> None:
        """Mark the bytes of ``array`` (made by ``np.frombuffer`` of :meth:`view`) as in use while it lives.

        Every view of it references it (numpy stops its base chain at the first array whose base
        is not an array), so a weak reference tells when nothing uses the bytes any more.
        """
        self._lent = weakref.ref(array)


def _read_all(f: IO[bytes], data: memoryview) -> int:
    """Fill ``data`` from ``f``; the number of bytes read."""
    got = 0
    while got < len(data):  # one read() returns at most about 2 GB
        n = f.readinto(data[got:])
        if not n:
            break
        got += n
    return got


def _parse_npy_header(header: bytes, path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, Fortran order, element count) of a whole version 1 or 2 header, by numpy's parser."""
    stream = io.BytesIO(header)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = read_header(stream)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{path}: bad .npy header ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: holds Python objects (dtype {dtype}), which are not loaded (pickled data "
                         f"could run code); save an array of numbers")
    return dtype, shape, fortran, int(np.prod(shape, dtype=np.int64))


def _npy_header(data: memoryview, path: str | os.PathLike) -> tuple[tuple, int] | None:
    """The parsed header (cached by its bytes) and the data offset; None for versions other than 1 and 2."""
    head = bytes(data[:8])
    if not head:
        raise ValueError(f"{path}: empty file (0 bytes)")
    if not (head.startswith(_NPY_MAGIC) or _NPY_MAGIC.startswith(head)):
        raise ValueError(f"{path}: not a .npy file (no NumPy header)")
    if len(head) == 8 and head[6:] not in (b"\x01\x00", b"\x02\x00"):
        return None
    size_bytes = 2 if head[6:7] == b"\x01" else 4
    end = 8 + size_bytes + int.from_bytes(data[8:8 + size_bytes], "little")
    if len(data) < end:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, the file ends inside its .npy header")
    header = bytes(data[:end])
    parsed = _NPY_HEADERS.get(header)
    if parsed is None:
        parsed = _parse_npy_header(header, path)
        if len(_NPY_HEADERS) < 64:
            _NPY_HEADERS[header] = parsed
    return parsed, end


def read_npy(path: str | os.PathLike, buffer: NpyBuffer | None = None) -> np.ndarray:
    """``np.load(path, allow_pickle=False)`` for a plain ``.npy`` file, several times faster on small arrays.

    A folder of score maps repeats one header thousands of times; it is parsed once (by numpy's own
    header reader) and cached by its bytes; other format versions go to ``np.load``. With ``buffer``
    the file is read into it (see :class:`NpyBuffer`): no allocation per file when reading thousands.
    A file that cannot be read as an array of numbers (empty, not ``.npy``, truncated, object
    dtype) is a one-line ``ValueError`` starting with the path.
    """
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        data = memoryview(bytearray(size)) if buffer is None else buffer.view(size)  # writable, as np.load's
        got = _read_all(f, data)
    if got != size:
        raise ValueError(f"{path}: read {got} of its {size} bytes (was it being written?)")
    found = _npy_header(data, path)
    if found is None:
        return _np_load(path)
    (dtype, shape, fortran, count), end = found
    expected = count * dtype.itemsize
    if len(data) - end != expected:
        cut = "truncated: " if len(data) - end < expected else ""
        raise ValueError(f"{path}: {cut}{len(data) - end} data bytes, its header says {expected}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=end)
    if buffer is not None:
        buffer.lend(array)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _np_load(path: str | os.PathLike) -> np.ndarray:
    """``np.load`` (no pickles) with its errors as one line naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path}: {e}") from None
