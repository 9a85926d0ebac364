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
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from tedloc.errors import DataError

__all__ = ["load_image", "to_rgb", "exif_orientation", "read_image_size"]

Image.MAX_IMAGE_PIXELS = 20000 * 20000


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


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return it as 8-bit RGB; a clear :class:`DataError` if it cannot be read."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image, path)
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except IsADirectoryError:
        raise DataError("expected an image file, found a directory", path) from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image: {e}", path) from None


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the stored pixel grid, from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image: {e}", path) from None


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = identity, also when absent)."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF blocks are common and harmless here
        return 1
