"""Video datasets: the image format, with shots as the training ids.

A video dataset (``dataset.yaml``: ``kind: video``) is a tedloc dataset directory whose ``shot_splits``
(``train``) list **shot folders**: each id is a folder of frame images (relative to ``image_root``), its
label is its video's class, its size is unknown and it has no box. The other splits (``val``, ``test``)
list **annotated frames**, each an image file with its size and one or more GT boxes, as in an image
dataset. Frames of a shot are its image files in natural order (``frame2`` before ``frame10``).

Training draws frames of every shot (:class:`~tedloc.data.torch_dataset.WSOLImageDataset` with a shot
split): which frame a sample sees at an epoch is keyed by ``(seed, epoch, sample)``, so it is the same on
any device, worker and process count. :func:`frames_split` lists every frame of a shot split as an
image split, for what works per frame (pseudo-label maps, classifier views).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from tedloc.data.dataset import Split
from tedloc.errors import DataError

__all__ = ["FRAME_SUFFIXES", "list_frames", "frame_names", "is_frame_name", "ShotFrames", "frames_split",
           "natural_key"]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def is_frame_name(name: str) -> bool:
    """Whether a file of this name can be a frame: an image suffix, not hidden (macOS ``._x.jpg`` is not)."""
    return not name.startswith(".") and Path(name).suffix.lower() in FRAME_SUFFIXES


def frame_names(folder: str | os.PathLike) -> list[str]:
    """The frame file names directly inside ``folder``, in natural order (empty when there is none; ``OSError``
    when the folder cannot be listed)."""
    return sorted((e.name for e in os.scandir(folder) if e.is_file() and is_frame_name(e.name)), key=natural_key)


def list_frames(folder: str | os.PathLike) -> list[str]:
    """The frame file names of a shot folder in natural order (DataError naming the folder when it has none)."""
    folder = Path(folder)
    try:
        names = frame_names(folder)
    except FileNotFoundError:
        raise DataError("shot folder not found", folder) from None
    except NotADirectoryError:
        raise DataError("a shot id must be a folder of frames, this is a file", folder) from None
    if not names:
        raise DataError(f"shot folder without frames ({', '.join(FRAME_SUFFIXES)})", folder)
    return names


class ShotFrames:
    """The frames of every shot of a shot split, listed once on first use (lazily, per shot)."""

    def __init__(self, split: Split):
        if not split.shots:
            raise ValueError(f"split {split.name!r} is not a shot split")
        self.split = split
        self._frames: dict[int, list[str]] = {}

    def __call__(self, shot: int) -> list[str]:
        """The frame names of shot ``shot`` (its folder listed on first use)."""
        if shot not in self._frames:
            self._frames[shot] = list_frames(self.split.image_path(shot))
        return self._frames[shot]

    def frame_id(self, shot: int, u: float) -> str:
        """The id (``<shot>/<frame>``) of the frame of shot ``shot`` picked by a uniform ``u`` in [0, 1)."""
        frames = self(shot)
        return f"{self.split.image_ids[shot]}/{frames[min(int(u * len(frames)), len(frames) - 1)]}"


def frames_split(split: Split, every: int = 1, skip_empty: bool = False) -> tuple[Split, np.ndarray]:
    """Every ``every``-th frame of each shot of ``split`` as an image split (ids ``<shot>/<frame>``, the shot's
    label, unknown sizes, no boxes), and the shot index of each frame. ``skip_empty`` leaves out shot folders
    without frames instead of raising their DataError."""
    if every < 1:
        raise ValueError("every must be >= 1")
    listing = ShotFrames(split)
    ids, shots = [], []
    for i, shot_id in enumerate(split.image_ids):
        try:
            frames = listing(i)
        except DataError:
            if skip_empty:
                continue
            raise
        for name in frames[::every]:
            ids.append(f"{shot_id}/{name}")
            shots.append(i)
    index = np.asarray(shots, dtype=np.int64)
    frames = Split(f"{split.name}_frames", ids, split.labels[index] if len(index) else np.zeros(0, np.int64),
                   np.full((len(ids), 2), -1), [np.zeros((0, 4))] * len(ids), image_root=split.image_root,
                   mask_root=split.mask_root)
    return frames, index
