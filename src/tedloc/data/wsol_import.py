"""Import the official wsolevaluation metadata (CUB, ILSVRC, OpenImages) as tedloc dataset directories.

Class names:

- CUB: from the image folder of each class (``001.Black_footed_Albatross`` -> ``Black footed Albatross``).
- ILSVRC: the standard ImageNet-1k class names in wnid order (the list torchvision ships).
- OpenImages: the class MID from the image folder (``test/01226z/...`` -> ``/m/01226z``); the
  human-readable names are in OpenImages' ``class-descriptions`` file, which is not shipped.
- Any other dataset: ``class_<i>``.

Without ``--images`` the dataset is metadata-only: box and mask scoring still work.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from tedloc.data.dataset import SPLIT_NAMES, Split, WSOLDataset
from tedloc.data.wsol_format import read_split_metadata, save_dataset
from tedloc.errors import DataError, Problem

__all__ = ["import_wsol", "WSOL_DATASETS", "wsol_class_names"]

WSOL_DATASETS = {"CUB": 200, "ILSVRC": 1000, "OpenImages": 100}


def _names_from_folders(splits: dict[str, Split], num_classes: int, fmt) -> list[str]:
    names: dict[int, str] = {}
    for split in splits.values():
        for image_id, label in zip(split.image_ids, split.labels):
            parts = PurePosixPath(image_id).parts
            folder = parts[-2] if len(parts) >= 2 else None
            if folder is not None:
                names.setdefault(int(label), fmt(folder))
    return [names.get(k, f"class_{k}") for k in range(num_classes)]


def _cub_name(folder: str) -> str:
    return folder.split(".", 1)[-1].replace("_", " ")


def wsol_class_names(dataset: str, splits: dict[str, Split], num_classes: int) -> list[str]:
    """Class names of a wsolevaluation dataset (see the module docstring)."""
    if dataset == "ILSVRC" and num_classes == 1000:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    if dataset == "CUB":
        return _names_from_folders(splits, num_classes, _cub_name)
    if dataset == "OpenImages":
        return _names_from_folders(splits, num_classes, lambda mid: f"/m/{mid}")
    return [f"class_{k}" for k in range(num_classes)]


def import_wsol(
    metadata_root: str | os.PathLike,
    dataset: str,
    out: str | os.PathLike,
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, str]]:
    """Convert ``<metadata_root>/<dataset>/<split>/`` folders into a dataset directory at ``out``.

    Returns the directory and, per skipped split, why it was skipped (e.g. ILSVRC train, whose
    metadata is not distributed with the evaluation code).
    """
    root = Path(metadata_root) / dataset
    if not root.is_dir():
        raise DataError(f"no folder for dataset {dataset!r} (expected {', '.join(WSOL_DATASETS)} "
                        f"under the metadata root)", root)
    num_classes = WSOL_DATASETS.get(dataset)
    splits: dict[str, Split] = {}
    skipped: dict[str, str] = {}
    problems: list[Problem] = []
    for name in SPLIT_NAMES:
        folder = root / name
        if not (folder / "image_ids.txt").is_file():
            skipped[name] = "no image_ids.txt"
            continue
        split, found = read_split_metadata(folder, name, num_classes)
        problems += found
        if len(split) == 0:
            skipped[name] = "empty"
            continue
        splits[name] = split
    if problems:
        raise DataError.from_problems(problems)
    if not splits:
        raise DataError("no split with metadata found", root)
    if num_classes is None:
        num_classes = int(max(int(s.labels.max()) for s in splits.values())) + 1
    names = wsol_class_names(dataset, splits, num_classes)
    ds = WSOLDataset(dataset, names, splits)
    image_root = None if images is None else str(Path(images).resolve())
    mask_root = None if masks is None else str(Path(masks).resolve())
    return save_dataset(ds, out, image_root=image_root, mask_root=mask_root), skipped
