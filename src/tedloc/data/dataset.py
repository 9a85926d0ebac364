"""The in-memory representation shared by every dataset, method and metric.

A :class:`WSOLDataset` is the ordered class names plus one :class:`Split` per split name.
A split is columnar: image ids, class indices, image sizes and, per image, zero or more GT
boxes and instance masks. Boxes are ``(x0, y0, x1, y1)`` integer pixel coordinates of the
original image, inclusive on both ends, exactly as in wsolevaluation's ``localization.txt``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = ["Split", "WSOLDataset", "SPLIT_NAMES", "DATASET_KINDS", "check_image_id"]

SPLIT_NAMES = ("train", "val", "test")
DATASET_KINDS = ("images", "video")


def check_image_id(image_id: str) -> str | None:
    """Return why ``image_id`` is not a safe relative path inside the image root, or None if it is."""
    if not image_id:
        return "empty image id"
    if image_id != image_id.strip():
        return f"image id {image_id!r} has leading or trailing whitespace"
    if "\\" in image_id:
        return f"image id {image_id!r} contains a backslash; use '/' separators"
    path = PurePosixPath(image_id)
    if path.is_absolute() or image_id.startswith("~"):
        return f"image id {image_id!r} is absolute; ids are paths relative to the image root"
    if any(part == ".." for part in path.parts):
        return f"image id {image_id!r} escapes the image root ('..')"
    if "//" in image_id or image_id.endswith("/"):
        return f"image id {image_id!r} has an empty path component"
    return None


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        name: split name (``train``, ``val``, ``test`` or any other).
        image_ids: image paths relative to ``image_root``; their order is the evaluation order.
        labels: class index per image, int64 of shape (N,).
        sizes: original ``(width, height)`` per image, int64 of shape (N, 2); -1 where unknown.
        boxes: per image an int64 array of shape (n_i, 4), ``x0, y0, x1, y1`` inclusive.
        mask_paths: per image the instance mask paths, relative to ``mask_root``.
        ignore_paths: per image the ignore mask path (relative to ``mask_root``) or None.
        image_root: folder the ids are relative to; None for metadata-only datasets.
        mask_root: folder the mask paths are relative to, or None.
        shots: the ids are shot folders of a video dataset (their frames inside, the video's label, no
            boxes; :mod:`tedloc.data.video`), not image files.
    """

    name: str
    image_ids: list[str]
    labels: np.ndarray
    sizes: np.ndarray
    boxes: list[np.ndarray]
    mask_paths: list[tuple[str, ...]] = field(default_factory=list)
    ignore_paths: list[str | None] = field(default_factory=list)
    image_root: Path | None = None
    mask_root: Path | None = None
    shots: bool = False

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(n)
        self.sizes = np.asarray(self.sizes, dtype=np.int64).reshape(n, 2)
        self.boxes = [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in self.boxes]
        if not self.mask_paths:
            self.mask_paths = [()] * n
        if not self.ignore_paths:
            self.ignore_paths = [None] * n
        for attr in ("boxes", "mask_paths", "ignore_paths"):
            if len(getattr(self, attr)) != n:
                raise ValueError(f"split {self.name!r}: {attr} has {len(getattr(self, attr))} entries for {n} images")
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> int:
        """The number of GT boxes over all images."""
        return int(sum(len(b) for b in self.boxes))

    @property
    def num_masks(self) -> int:
        """The number of instance mask files over all images."""
        return int(sum(len(m) for m in self.mask_paths))

    @property
    def has_boxes(self) -> bool:
        """Whether any image has a GT box."""
        return any(len(b) for b in self.boxes)

    @property
    def has_masks(self) -> bool:
        """Whether any image has an instance mask."""
        return any(len(m) for m in self.mask_paths)

    def index_of(self, image_id: str) -> int:
        """Position of ``image_id`` in the split (KeyError if absent)."""
        if self._index is None:
            self._index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        return self._index[image_id]

    def image_path(self, i: int) -> Path:
        """The file of image ``i`` (FileNotFoundError for a metadata-only split)."""
        if self.image_root is None:
            raise FileNotFoundError(f"split {self.name!r} has no image root (metadata-only dataset)")
        return self.image_root / self.image_ids[i]

    def mask_files(self, i: int) -> tuple[list[Path], Path | None]:
        """Absolute instance mask paths and ignore mask path of image ``i``."""
        if self.mask_root is None:
            raise FileNotFoundError(f"split {self.name!r} has no mask root")
        ignore = self.ignore_paths[i]
        return [self.mask_root / p for p in self.mask_paths[i]], (None if ignore is None else self.mask_root / ignore)

    def subset(self, indices: list[int] | np.ndarray, name: str | None = None) -> "Split":
        """A new split holding the images at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return Split(
            name=name or self.name,
            image_ids=[self.image_ids[i] for i in idx],
            labels=self.labels[idx],
            sizes=self.sizes[idx],
            boxes=[self.boxes[i] for i in idx],
            mask_paths=[self.mask_paths[i] for i in idx],
            ignore_paths=[self.ignore_paths[i] for i in idx],
            image_root=self.image_root,
            mask_root=self.mask_root,
            shots=self.shots,
        )

    def with_boxes(self, boxes: list[np.ndarray]) -> "Split":
        """A copy whose boxes are replaced (pseudo-boxes, noisy boxes), one array (n_i, 4) per image."""
        if len(boxes) != len(self):
            raise ValueError(f"split {self.name!r}: {len(boxes)} box arrays for {len(self)} images")
        return Split(self.name, list(self.image_ids), self.labels.copy(), self.sizes.copy(), list(boxes),
                     list(self.mask_paths), list(self.ignore_paths), self.image_root, self.mask_root, self.shots)

    def equals(self, other: "Split") -> bool:
        """Content equality (ids, labels, sizes, boxes, masks); roots are not compared."""
        return (
            self.name == other.name
            and self.image_ids == other.image_ids
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.sizes, other.sizes)
            and len(self.boxes) == len(other.boxes)
            and all(np.array_equal(a, b) for a, b in zip(self.boxes, other.boxes))
            and list(self.mask_paths) == list(other.mask_paths)
            and list(self.ignore_paths) == list(other.ignore_paths)
        )


@dataclass
class WSOLDataset:
    """Class names plus splits; what every method and metric reads.

    Attributes:
        name: dataset name (e.g. ``tinyimagenet``, ``CUB``, ``synthetic``).
        class_names: ordered class names; class index ``k`` is ``class_names[k]``.
        splits: split name -> :class:`Split`.
        root: the dataset directory it was read from, if any.
        kind: ``images`` or ``video`` (train ids are shot folders, val/test ids annotated frames).
    """

    name: str
    class_names: list[str]
    splits: dict[str, Split]
    root: Path | None = None
    kind: str = "images"

    @property
    def is_video(self) -> bool:
        """Whether this is a video dataset (:mod:`tedloc.data.video`)."""
        return self.kind == "video"

    @property
    def num_classes(self) -> int:
        """The number of classes (K)."""
        return len(self.class_names)

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            where = f" in {self.root}" if self.root else ""
            raise KeyError(f"no split {split!r}{where}; available: {', '.join(self.splits) or 'none'}") from None
