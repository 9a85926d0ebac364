"""Image decoding with documented conversions of every pixel format to 8-bit RGB.

Conversions (each tested):

- ``RGB``: as is. ``L`` (grayscale), ``P`` (palette), ``1`` (bilevel): PIL's conversion to RGB.
- ``RGBA``, ``LA``, ``PA``: the alpha channel is dropped, as wsolevaluation's ``convert('RGB')``
  does (transparent pixels keep their stored colour).
- ``CMYK``: PIL's CMYK -> RGB conversion (no colour management), as ``convert('RGB')``.
- 16-bit and 32-bit integer grayscale (``I;16*``, ``I``): scaled to 8 bit by ``round(v / 257)``
  and clipped to [0, 255] (``convert('RGB')`` would saturate them instead).
- Float grayscale (``F``): rejected; there is no agreed scale.
- EXIF orientation is **not** applied, exactly as in wsolevaluation: boxes, masks and
  ``image_sizes.txt`` refer to the stored pixel grid. ``tedloc data check`` warns about
  images whose EXIF orientation is not the identity.

For prediction, :func:`load_image_reduced` decodes large images at reduced size, in memory that
follows the reduced size (JPEG, 8-bit PNG), and refuses files above a number of pixels.
"""
from __future__ import annotations

import io
import itertools
import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image

from tedloc.errors import DataError

__all__ = ["load_image", "load_image_reduced", "reduce_image", "reduction_factor", "to_rgb", "exif_orientation",
           "read_image_size", "MAX_PIXELS"]

MAX_PIXELS = 20000 * 20000  # the default bound on the pixels of an image decoded for prediction
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_STRIP_BYTES = 1 << 22  # raw PNG rows decoded at a time by the reduced decoder
_IDAT_PIECE = 1 << 20  # bytes of compressed data read at a time


def to_rgb(image: Image.Image, path: str | os.PathLike | None = None) -> Image.Image:
    """Convert a decoded image of any supported mode to 8-bit RGB (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("L", "P", "1", "RGBA", "LA", "PA", "CMYK", "RGBX", "YCbCr", "LAB", "HSV"):
        if mode in ("P", "PA"):
            image = image.convert("RGBA")
        return image.convert("RGB")
    if mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    raise DataError(f"unsupported image mode {mode!r} (expected 8/16-bit grayscale, palette, RGB(A) or CMYK)", path)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the many exceptions of a failed decoding into one :class:`DataError` naming ``path``."""
    try:
        yield
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except IsADirectoryError:
        raise DataError("expected an image file, found a directory", path) from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, zlib.error, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image: {e}", path) from None


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it as 8-bit RGB; a clear :class:`DataError` if it cannot be read."""
    path = Path(path)
    with _reading(path), Image.open(path) as image:
        image.load()
        return to_rgb(image, path)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the stored pixel grid, from the header only."""
    path = Path(path)
    with _reading(path), Image.open(path) as image:
        return image.size


def reduction_factor(size: tuple[int, int], min_size: tuple[int, int]) -> int:
    """The largest integer ``f >= 1`` keeping ``size / f`` at least ``min_size`` on both sides (1 if below)."""
    return max(1, min(size[0] // max(1, min_size[0]), size[1] // max(1, min_size[1])))


def reduce_image(image: Image.Image, min_size: tuple[int, int]) -> Image.Image:
    """``image.reduce(f)`` (means of f x f blocks), f = :func:`reduction_factor`; ``image`` itself when f is 1."""
    factor = reduction_factor(image.size, min_size)
    return image.reduce(factor) if factor > 1 else image


def load_image_reduced(
    path: str | os.PathLike, min_size: tuple[int, int], max_pixels: int | None = MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """8-bit RGB decoded at reduced size (at least ``min_size``), and the ``(width, height)`` of the stored image.

    Memory follows the reduced size, not the stored one, where the format allows:

    - JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale (PIL's ``Image.draft``), the largest not below ``min_size``;
    - non-interlaced 8-bit PNG: decoded a strip of rows at a time, each strip reduced at once;
    - other files: decoded whole.

    The image is then box-reduced (:func:`reduce_image`) by the largest integer factor that keeps it at least
    ``min_size``: for all formats but JPEG, the same pixels as ``reduce_image(load_image(path), min_size)``.
    An image no larger than twice ``min_size`` on some side comes out as :func:`load_image` gives it.

    Args:
        path: the image file.
        min_size: ``(width, height)`` the result keeps at least (unless the image is smaller).
        max_pixels: images with more pixels are refused (a :class:`DataError`) before decoding; None: no bound.
            Above PIL's own decompression-bomb bound (``PIL.Image.MAX_IMAGE_PIXELS``), it raises that bound.
    """
    path = Path(path)
    _allow_in_pil(max_pixels)
    with _reading(path), _opened(path, max_pixels) as image:
        size = image.size
        factor = reduction_factor(size, min_size)
        if factor > 1 and image.format == "PNG":
            reduced = _png_reduced(path, factor)
            if reduced is not None:
                return reduced, size
        if factor > 1:
            image.draft(None, tuple(min_size))  # JPEG: DCT scaling; no-op for other formats
        image.load()
        return reduce_image(to_rgb(image, path), min_size), size


def _allow_in_pil(max_pixels: int | None) -> None:
    """Raise PIL's process-wide decompression-bomb bound to ``max_pixels`` if that is higher (never lowers it)."""
    if Image.MAX_IMAGE_PIXELS is not None and (max_pixels is None or max_pixels > Image.MAX_IMAGE_PIXELS):
        Image.MAX_IMAGE_PIXELS = max_pixels


@contextmanager
def _opened(path: Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """The image opened (header only), refused with a one-line :class:`DataError` above ``max_pixels``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bound is checked here
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:  # above twice PIL's bound, which is at least max_pixels
            raise _too_large(f"more than {2 * Image.MAX_IMAGE_PIXELS:,}", max_pixels, path) from None
    with image:
        w, h = image.size
        if max_pixels is not None and w * h > max_pixels:
            raise _too_large(f"{w}x{h} = {w * h:,}", max_pixels, path)
        yield image


def _too_large(pixels: str, max_pixels: int, path: Path) -> DataError:
    return DataError(f"image has {pixels} pixels, more than the limit of {max_pixels:,} (raise it with "
                     f"--max-pixels, or max_pixels= in the Python API)", path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I4s", len(data), kind), data, struct.pack(">I", crc)))


def _png_chunks(f: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """``(type, data)`` of a PNG file's chunks up to IEND; IDAT data comes in pieces of at most 1 MiB."""
    if f.read(8) != _PNG_SIGNATURE:
        raise OSError("not a PNG file")
    kind = b""
    while kind != b"IEND":
        head = f.read(8)
        if len(head) < 8:
            raise OSError("image file is truncated")
        length, kind = struct.unpack(">I4s", head)
        step = _IDAT_PIECE if kind == b"IDAT" else max(1, length)
        for start in range(0, max(1, length), step):
            piece = f.read(min(step, length - start))
            if len(piece) < min(step, length - start):
                raise OSError("image file is truncated")
            yield kind, piece
        f.read(4)  # CRC: PIL checked the header chunks on opening, zlib checks the data


def _inflated(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The decompressed zlib stream of ``pieces``, at most 1 MiB at a time."""
    inflate = zlib.decompressobj()
    for piece in pieces:
        while piece:
            yield inflate.decompress(piece, _IDAT_PIECE)
            piece = inflate.unconsumed_tail
    yield inflate.flush()


def _blocks(data: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``data`` regrouped in blocks of exactly ``size`` bytes (the last may be shorter)."""
    parts, held = [], 0
    for piece in data:
        while piece:
            take = min(len(piece), size - held)
            parts.append(piece[:take])
            piece, held = piece[take:], held + take
            if held == size:
                yield b"".join(parts)
                parts, held = [], 0
    if held:
        yield b"".join(parts)


def _png_reduced(path: Path, factor: int) -> Image.Image | None:
    """A non-interlaced 8-bit PNG decoded a strip of rows at a time, as RGB box-reduced by ``factor``; None for
    other PNGs.

    Each strip is decoded by PIL as a PNG of its own, the unfiltered row above it put first (filter type None),
    so PNG's row filters see the same data as in the whole image: the result is exactly
    ``to_rgb(whole).reduce(factor)``.
    """
    with open(path, "rb") as f:
        chunks = _png_chunks(f)
        _, ihdr = next(chunks)
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
        if depth != 8 or interlace or colour not in _PNG_SAMPLES:
            return None
        row_bytes = 1 + width * _PNG_SAMPLES[colour]
        extra, kind, data = b"", b"", b""
        for kind, data in chunks:
            if kind == b"IDAT":
                break
            if kind in (b"PLTE", b"tRNS"):
                extra += _png_chunk(kind, data)
        pieces = (piece for k, piece in itertools.chain([(kind, data)], chunks) if k == b"IDAT")
        strip_rows = max(1, _STRIP_BYTES // (row_bytes * factor)) * factor
        out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
        above, y = None, 0
        for rows in _blocks(_inflated(pieces), strip_rows * row_bytes):
            n = min(len(rows) // row_bytes, height - y)
            if n <= 0:
                break
            strip, top = _png_strip(ihdr, extra, above, rows[:n * row_bytes])
            above = strip.crop((0, top + n - 1, width, top + n)).tobytes()
            out.paste(to_rgb(strip, path).reduce(factor, (0, top, width, top + n)), (0, y // factor))
            y += n
        if y < height:
            raise OSError("image file is truncated")
        return out


def _png_strip(ihdr: bytes, extra: bytes, above: bytes | None, rows: bytes) -> tuple[Image.Image, int]:
    """Filtered PNG ``rows`` decoded by PIL, after ``above``, the unfiltered row before them (None at the top);
    returns the image and the index of the first of ``rows`` in it (1 after a row above, else 0).

    ``ihdr``: the image's header chunk data, ``extra``: its PLTE and tRNS chunks, copied into the strip's PNG.
    """
    top = int(above is not None)
    if top:
        rows = b"\x00" + above + rows
    width = struct.unpack(">I", ihdr[:4])[0]
    height = len(rows) // (1 + width * _PNG_SAMPLES[ihdr[9]])
    data = (_PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">II", width, height) + ihdr[8:13]) + extra
            + _png_chunk(b"IDAT", zlib.compress(rows, 0)) + _png_chunk(b"IEND", b""))
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return image, top


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = identity, also when absent)."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF blocks are common and harmless here
        return 1
