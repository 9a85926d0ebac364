"""A torch ``Dataset`` over a :class:`~tedloc.data.dataset.Split`, with reproducible random views."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from tedloc.data.dataset import Split
from tedloc.data.images import load_image
from tedloc.data.video import ShotFrames
from tedloc.errors import DataError

if TYPE_CHECKING:  # the record builds these datasets (Preprocessing.dataset)
    from tedloc.data.preprocessing import Preprocessing

__all__ = ["WSOLImageDataset", "WorkerDataError", "load_sample_image"]

FRAME_STREAM = 0x66726D  # keyed random numbers: which frame of its shot a sample sees at an epoch


class WorkerDataError(DataError):
    """A :class:`DataError` raised in a DataLoader worker process, still one line in the main process.

    torch re-raises a worker's exception in the main process as ``type(e)(text)``, ``text`` being
    "Caught ... in DataLoader worker process N", the worker's traceback, and last
    ``<module>.<class>: <message>``; this class keeps only ``<message>`` of that text.
    """

    def __init__(self, message: str, *args, **kwargs):
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        super().__init__(message.rsplit(marker, 1)[-1].rstrip("\n"), *args, **kwargs)


def load_sample_image(path: str | os.PathLike) -> Image.Image:
    """:func:`~tedloc.data.images.load_image` for a dataset's ``__getitem__``: in a DataLoader worker, its
    :class:`DataError` comes as a :class:`WorkerDataError`, whose message survives torch's re-raise."""
    try:
        return load_image(path)
    except DataError as e:
        if get_worker_info() is None:
            raise
        raise WorkerDataError(str(e)) from None


class WSOLImageDataset(Dataset):
    """Images of a split as normalised tensors plus label, index and the applied view.

    The random view of sample ``i`` in epoch ``e`` depends only on ``(seed, e, i)``, so results do
    not depend on the number of workers, and an interrupted run that resumes at epoch ``e``
    sees exactly the views it would have seen.

    A shot split (video training, :mod:`tedloc.data.video`) gives ``frames_per_shot`` samples per shot: sample
    ``i`` is a frame of shot ``i // frames_per_shot`` drawn uniformly, keyed by ``(seed, epoch, i)`` (the middle
    frame for eval views); its item adds ``shot`` and ``frame`` (the frame's position in the shot).

    Args:
        split: the split to read.
        preprocessing: the model's :class:`~tedloc.data.preprocessing.Preprocessing` (geometry and normalisation).
        train: random training views (resize, crop, flip) instead of the eval view.
        seed: base seed of the random views.
        frames_per_shot: samples per shot of a shot split.
        transform: the views, instead of the preprocessing's train or eval transform (anything with
            ``view(src_size, rng) -> View``, e.g. :class:`~tedloc.data.transforms.NativeTransform`).
    """

    def __init__(self, split: Split, preprocessing: Preprocessing, train: bool = False, seed: int = 0,
                 frames_per_shot: int = 1, transform=None):
        if split.image_root is None:
            raise FileNotFoundError(f"split {split.name!r} has no images (metadata-only dataset)")
        if frames_per_shot < 1:
            raise ValueError("frames_per_shot must be >= 1")
        self.split = split
        self.shot_frames = ShotFrames(split) if split.shots else None
        self.frames_per_shot = frames_per_shot if split.shots else 1
        self.train = train
        self.preprocessing = preprocessing
        if transform is None:
            transform = preprocessing.train_transform() if train else preprocessing.eval_transform()
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the random views of ``epoch`` (training views depend on (seed, epoch, index))."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split) * self.frames_per_shot

    def __getitem__(self, i: int) -> dict:
        if self.shot_frames is None:
            return self._item(i, self.split.image_path(i), int(self.split.labels[i]), {})
        shot = i // self.frames_per_shot
        try:
            frames = self.shot_frames(shot)
        except DataError as e:
            if get_worker_info() is None:
                raise
            raise WorkerDataError(str(e)) from None
        u = np.random.default_rng([self.seed, self.epoch, i, FRAME_STREAM]).random() if self.train else 0.5
        frame = min(int(u * len(frames)), len(frames) - 1)
        return self._item(i, self.split.image_path(shot) / frames[frame], int(self.split.labels[shot]),
                          {"shot": shot, "frame": frame})

    def _item(self, i: int, path, label: int, extra: dict) -> dict:
        image = load_sample_image(path)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        view = self.transform.view(image.size, rng)
        x = self.preprocessing.view_input(view, image)
        return {"image": x, "label": label, "index": i, "view": view.to_tensor(), **extra}
