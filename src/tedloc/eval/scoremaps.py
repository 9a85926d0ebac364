"""Score maps as the WSOL evaluation expects them: thresholds, normalisation, validity.

Rules of wsolevaluation (Choe et al. 2020) kept bit-exact:

- thresholds are ``np.arange(0, 1, interval)`` in float64 (100 values at 0.01, 1000 at 0.001);
- a raw CAM becomes a score map by ``cv2.resize(..., INTER_CUBIC)`` in float64, then a
  per-image min-max to [0, 1]; a constant map, or one with NaN, becomes all zeros;
- score maps are evaluated in float64 (float32 maps are upcast first, as the reference does).

Where the reference would silently skew numbers we raise instead: a map with NaN or inf, a
map outside [0, 1], or a map that is not 2-D is a :class:`ScoreMapError` naming the image.
"""
from __future__ import annotations

import cv2
import numpy as np

from tedloc.errors import OptionError, TedlocError

try:  # one C pass for quantisation and the range check; numpy otherwise
    from tedloc.eval._boxkernel import quantize as _quantize
except ImportError:  # pragma: no cover - depends on the build
    _quantize = None

__all__ = ["ScoreMapError", "threshold_list", "normalize_scoremap", "validate_scoremap", "to_uint8",
           "quantize_scoremap", "check_class_scores"]


class ScoreMapError(TedlocError):
    """A score map or class score vector that cannot be evaluated (wrong shape, NaN/inf, outside [0, 1])."""


def threshold_list(interval: float) -> np.ndarray:
    """The CAM thresholds of wsolevaluation: ``np.arange(0, 1, interval)`` (float64, 1.0 excluded)."""
    if not 0 < interval < 1:
        raise OptionError(f"threshold interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval, dtype=np.float64)


def normalize_scoremap(cam: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Raw CAM -> score map: bicubic resize to ``size`` = (width, height) in float64, then min-max.

    NaN anywhere, or a constant map, gives all zeros (the reference's rule).
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ScoreMapError(f"a CAM must be 2-D, got shape {cam.shape}")
    if size is not None and (cam.shape[1], cam.shape[0]) != tuple(size):
        cam = cv2.resize(cam, tuple(int(s) for s in size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    lo, hi = cam.min(), cam.max()
    if lo == hi:
        return np.zeros_like(cam)
    cam = cam - lo
    return cam / cam.max()


def _checked_array(score_map: np.ndarray, where: str, shape: tuple[int, int] | None) -> np.ndarray:
    """The map as an array after the checks of its shape and dtype (float32 kept, other floats as float64)."""
    arr = np.asarray(score_map)
    if arr.ndim != 2:
        raise ScoreMapError(f"score map{where} must be 2-D (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ScoreMapError(f"score map{where} is empty (shape {arr.shape})")
    if shape is not None and arr.shape != tuple(shape):
        raise ScoreMapError(f"score map{where} has shape {arr.shape}, expected {tuple(shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ScoreMapError(f"score map{where} must be float (values in [0, 1]), got dtype {arr.dtype}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    return arr


def _check_range(lo: float, hi: float, where: str) -> None:
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN and inf show in the extremes
        raise ScoreMapError(f"score map{where} contains NaN or inf; normalise raw CAMs with "
                            f"normalize_scoremap(), which maps NaN maps to zeros as the reference does")
    if lo < 0.0 or hi > 1.0:
        raise ScoreMapError(f"score map{where} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; "
                            f"normalise it with normalize_scoremap()")


def validate_scoremap(score_map: np.ndarray, image_id: str = "", shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return ``score_map`` (float32 kept, other floats as float64) after checking it is 2-D, finite and in [0, 1].

    float32 maps stay float32, as the reference uses them: quantising ``s * 255`` in float32 or
    float64 gives the same bytes for every float32 ``s`` in [0, 1] (checked exhaustively around
    every ``k / 255`` in the tests), and the PxAP bins compare in float64 either way.
    """
    where = f" for {image_id}" if image_id else ""
    arr = _checked_array(score_map, where, shape)
    _check_range(float(arr.min()), float(arr.max()), where)
    return arr


def quantize_scoremap(
    score_map: np.ndarray, image_id: str = "", shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(validate_scoremap(m), to_uint8(m))`` with the same errors, in one pass over the map when the C kernel is built."""
    if _quantize is None:
        arr = validate_scoremap(score_map, image_id, shape)
        return arr, to_uint8(arr)
    where = f" for {image_id}" if image_id else ""
    arr = np.ascontiguousarray(_checked_array(score_map, where, shape))
    u8 = np.empty(arr.shape, dtype=np.uint8)
    lo, hi = _quantize(arr, arr.dtype == np.float32, u8)
    _check_range(lo, hi, where)
    return arr, u8


def check_class_scores(class_scores: np.ndarray, num_classes: int | None = None, where: str = "") -> np.ndarray:
    """``class_scores`` after checking it is a vector of real numbers (``num_classes`` of them if given)."""
    arr = np.asarray(class_scores)
    if arr.ndim != 1:
        raise ScoreMapError(f"class scores{where} must be 1-D (K,), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ScoreMapError(f"class scores{where} must be real numbers, got dtype {arr.dtype}")
    if num_classes is not None and len(arr) != num_classes:
        raise ScoreMapError(f"class scores{where}: {len(arr)} entries, expected {num_classes} "
                            f"(one per class)")
    return arr


def to_uint8(score_map: np.ndarray) -> np.ndarray:
    """``floor(255 * s)`` as uint8, the quantisation used for boxes (255 only where s == 1)."""
    return (score_map * 255).astype(np.uint8)
