"""The text files of a dataset (metadata, box files, the source lists of an import): UTF-8, and a file that is
not is reported at the line of its first bad byte, not at a byte offset of the whole file."""
from __future__ import annotations

import os
from pathlib import Path

from tedloc.errors import DataError, Problem

__all__ = ["read_utf8", "decode_utf8"]

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_utf8(data: bytes, path: str | os.PathLike) -> str | Problem:
    """``data`` (the bytes of ``path``) as text, or the problem naming the file and the line of the first byte
    that is not UTF-8 (a UTF-16 file, told by its byte order mark: the file)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if data.startswith(_UTF16_BOMS):
            return Problem("not UTF-8 text (UTF-16: it starts with a byte order mark); save it as UTF-8", str(path))
        line_start = data.rfind(b"\n", 0, e.start) + 1
        return Problem(f"not UTF-8 text ({e.reason}: byte {data[e.start]:#04x} at column {e.start - line_start + 1})"
                       f"; save it as UTF-8", str(path), data.count(b"\n", 0, e.start) + 1)


def read_utf8(path: str | os.PathLike) -> str:
    """The text of the file ``path``; one that is not UTF-8 raises a :class:`DataError` naming the file and the
    line (``FileNotFoundError`` and other ``OSError`` pass through)."""
    text = decode_utf8(Path(path).read_bytes(), path)
    if isinstance(text, Problem):
        raise DataError(text.message, text.path, text.line)
    return text
