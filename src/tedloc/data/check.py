"""``tedloc data check``: every problem of a dataset directory at once."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tedloc.data.images import exif_orientation, to_rgb
from tedloc.data.wsol_format import load_dataset
from tedloc.errors import DataError, Problem
from tedloc.utils.progress import progress

__all__ = ["CheckReport", "check_dataset"]


@dataclass
class CheckReport:
    """What ``tedloc data check`` found: counts, problems (errors) and warnings."""

    root: str
    classes: int
    splits: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no problem (error) was found; warnings do not count."""
        return not self.problems

    def to_dict(self) -> dict:
        """A JSON-friendly record of the report, ``ok`` included."""
        return {"root": self.root, "classes": self.classes, "splits": self.splits, "problems": self.problems,
                "warnings": self.warnings, "ok": self.ok}


def _check_image(args: tuple[str, str, int, int]) -> tuple[list[str], list[str]]:
    """Decode one image fully; compare its size to the metadata. Returns (problems, warnings)."""
    path, image_id, w, h = args
    problems, warnings = [], []
    try:
        with Image.open(path) as image:
            image.load()
            orientation = exif_orientation(image)
            to_rgb(image, path)
            size = image.size
    except FileNotFoundError:
        return [f"{path}: image file not found"], []
    except DataError as e:
        return [str(e)], []
    except Exception as e:  # any decoder failure is a problem of this file, reported with its path
        return [f"{path}: cannot read image: {e}"], []
    if w > 0 and size != (w, h):
        problems.append(f"{path}: image is {size[0]}x{size[1]} but image_sizes.txt says {w}x{h} ({image_id})")
    if orientation != 1:
        warnings.append(f"{path}: EXIF orientation {orientation} is ignored: boxes and sizes refer to the "
                        f"stored pixel grid, as in wsolevaluation")
    return problems, warnings


def _check_shot(args: tuple[str, str, int, int]) -> tuple[list[str], list[str]]:
    """A shot folder of a video split: it has frames, and its first and last frames decode."""
    from tedloc.data.video import list_frames

    path = args[0]
    try:
        frames = list_frames(path)
    except DataError as e:
        return [str(e)], []
    problems, warnings = [], []
    for name in dict.fromkeys((frames[0], frames[-1])):
        p, w = _check_image((str(Path(path) / name), name, -1, -1))
        problems += p
        warnings += w
    return problems, warnings


def _check_mask(path: str) -> list[str]:
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        return [f"{path}: mask file not found"]
    except Exception as e:
        return [f"{path}: cannot read mask: {e}"]
    return []


def _no_boxes_warning(root: Path, name: str, has_masks: bool) -> str:
    """Why split ``name`` scores no box metric (a warning: masks-only datasets, e.g. OpenImages, are valid)."""
    if not has_masks:
        return f"split {name}: no boxes or masks, so it cannot score localization"
    why = "its localization.txt lists none" if (root / "metadata" / name / "localization.txt").is_file() \
        else "no localization.txt"
    return (f"split {name}: no GT boxes ({why}), so box metrics (MaxBoxAcc, MaxBoxAccV2, "
            f"Top-1/Top-5 Loc) cannot be computed, only PxAP; fine for a masks-only dataset")


def _check_item(args: tuple[str, str, int, int, bool]) -> tuple[list[str], list[str]]:
    return _check_shot(args[:4]) if args[4] else _check_image(args[:4])


def _shared_images(dataset, report: CheckReport) -> None:
    """An image listed in two splits (the same file, or the same id without an image root): a problem where one
    of them is the test split (a test image trained or selected on inflates every test metric), else a warning
    (the val split then selects on training images). One line per pair of splits, naming the first image."""
    def files(split) -> list[str]:
        if split.image_root is None:
            return list(split.image_ids)
        return [os.path.normpath(split.image_root / i) for i in split.image_ids]

    names = list(dataset.splits)
    listed = {name: files(dataset.splits[name]) for name in names}
    for a, name in enumerate(names):
        for other in names[a + 1:]:
            shared = set(listed[other]).intersection(listed[name])
            if not shared:
                continue
            first = next(f for f in listed[name] if f in shared)
            more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
            if "test" in (name, other):
                report.problems.append(f"{first}{more}: in both {name} and {other}: a test image must not be trained "
                                       f"or selected on (leakage inflates every test metric); a WSOL benchmark's "
                                       f"splits are disjoint")
            else:
                report.warnings.append(f"{first}{more}: in both {name} and {other}: the {other} split then selects "
                                       f"models and thresholds on training images")


def check_dataset(root: str | os.PathLike, images: bool = True, workers: int = 2) -> CheckReport:
    """Check metadata, images and masks of a dataset directory; never raises on bad content.

    Args:
        root: the dataset directory.
        images: decode every image and mask (slow on large datasets; metadata is always checked).
        workers: processes used to decode images.
    """
    root = Path(root)
    dataset, problems = load_dataset(root, strict=False)
    report = CheckReport(str(root), dataset.num_classes, problems=[str(p) for p in problems])
    for name, split in dataset.splits.items():
        report.splits[name] = {"images": len(split), "boxes": split.num_boxes, "masks": split.num_masks}
        if split.shots:
            report.splits[name]["shots"] = len(split)
        if name != "train" and len(split) and not split.has_boxes:
            report.warnings.append(_no_boxes_warning(root, name, split.has_masks))
    _shared_images(dataset, report)
    if not images:
        return report
    jobs, mask_jobs = [], []
    for name, split in dataset.splits.items():
        if split.image_root is None:
            report.warnings.append(f"split {name}: metadata-only dataset (no image_root), images not checked")
        else:
            jobs += [(str(split.image_root / i), i, int(w), int(h), split.shots)
                     for i, (w, h) in zip(split.image_ids, split.sizes)]
        if split.has_masks:
            if split.mask_root is None:
                report.problems.append(str(Problem(f"split {name} lists masks but dataset.yaml has no mask_root",
                                                   str(root / "dataset.yaml"), field="mask_root")))
            else:
                for ms, ig in zip(split.mask_paths, split.ignore_paths):
                    mask_jobs += [str(split.mask_root / m) for m in ms] + ([] if ig is None else [str(split.mask_root / ig)])
    if not jobs and not mask_jobs:
        return report
    chunk = max(1, min(512, len(jobs) // (8 * max(1, workers)) or 1))
    executor = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    mapper = executor.map if executor else map
    try:
        kwargs = {"chunksize": chunk} if executor else {}
        for p, w in progress(mapper(_check_item, jobs, **kwargs), desc="checking images", total=len(jobs),
                             unit="img"):
            report.problems += p
            report.warnings += w
        for p in progress(mapper(_check_mask, mask_jobs, **kwargs), desc="checking masks", total=len(mask_jobs),
                          unit="mask"):
            report.problems += p
    finally:
        if executor:
            executor.shutdown()
    return report
