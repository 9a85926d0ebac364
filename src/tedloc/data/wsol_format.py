"""Reader and writer of the wsolevaluation metadata format and of tedloc dataset directories.

Metadata of a split lives in one folder with these comma-separated text files:

- ``image_ids.txt``: ``<image_id>``; the order is the evaluation order.
- ``class_labels.txt``: ``<image_id>,<class index>``.
- ``image_sizes.txt``: ``<image_id>,<width>,<height>`` (may be empty, as for OpenImages).
- ``localization.txt``: ``<image_id>,<x0>,<y0>,<x1>,<y1>`` per GT box (inclusive pixel
  coordinates), or ``<image_id>,<mask>,<ignore mask>`` per instance mask (OpenImages; only the
  first line of an image names the ignore mask).
- ``masks.txt`` (tedloc extension): instance masks in the OpenImages line format, for
  datasets that have both boxes and masks (the synthetic benchmark).

A tedloc dataset directory holds ``metadata/<split>/`` folders, ``class_names.txt`` (one
name per class index) and ``dataset.yaml`` (``name``, ``image_root``, ``mask_root``; roots are
relative to the directory or absolute, ``null`` for metadata-only datasets). A video dataset
(:mod:`tedloc.data.video`) adds ``kind: video`` and ``shot_splits`` (the splits whose ids are shot folders).

Reading never stops at the first problem: every problem is collected with its file and
line, and :func:`load_dataset` raises one :class:`~tedloc.errors.DataError` listing them
(``strict=False`` returns them instead, which ``tedloc data check`` uses). A file repeating
a problem on every line is listed by its first five and a count; a file that is not UTF-8
text is one problem.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from tedloc.data.dataset import DATASET_KINDS, SPLIT_NAMES, Split, WSOLDataset, check_image_id
from tedloc.data.text_files import decode_utf8, read_utf8
from tedloc.errors import DataError, Problem, cap_problems
from tedloc.utils.io import atomic_write_text

__all__ = [
    "read_split_metadata",
    "write_split_metadata",
    "load_dataset",
    "save_dataset",
    "read_class_names",
    "DATASET_FORMAT",
]

DATASET_FORMAT = "tedloc-wsol/1"
_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


def _read_lines(path: Path, problems: list[Problem]) -> list[tuple[int, str]] | None:
    """Numbered non-final lines of a text file; '\\r\\n' endings accepted, blank lines reported.

    None for a file that is not UTF-8 text (UTF-16, binary): one problem, not one per line.
    """
    text = decode_utf8(path.read_bytes(), path)
    if isinstance(text, Problem):
        problems.append(text)
        return None
    if "\0" in text:
        problems.append(Problem("not UTF-8 text (NUL bytes: UTF-16 or binary?); save it as UTF-8", str(path)))
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline (ours) or none (wsolevaluation's files): both fine
    out = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            problems.append(Problem("blank line", str(path), number))
            continue
        out.append((number, line))
    return out


def _parse_int(text: str, path: Path, line: int, field: str, problems: list[Problem]) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        problems.append(Problem(f"expected an integer, got {text!r}", str(path), line, field))
        return None


def read_split_metadata(
    folder: str | os.PathLike,
    name: str,
    num_classes: int | None = None,
    image_root: Path | None = None,
    mask_root: Path | None = None,
) -> tuple[Split, list[Problem]]:
    """Read one split's metadata folder; return the split and every problem found.

    Images whose lines are broken are kept only when their id and label are valid; boxes that
    fail a check are dropped (and reported), so a non-empty problem list means "do not trust
    the numbers" and :func:`load_dataset` refuses it by default.
    """
    folder = Path(folder)
    problems: list[Problem] = []
    ids_path = folder / "image_ids.txt"
    if not ids_path.is_file():
        raise DataError("missing image_ids.txt (not a wsolevaluation metadata folder)", ids_path)

    image_ids: list[str] = []
    index: dict[str, int] = {}
    id_lines = _read_lines(ids_path, problems)

    def lines_of(path: Path) -> list[tuple[int, str]] | None:
        """Lines of a file of the split; None if it is missing or unreadable, or image_ids.txt is."""
        return None if id_lines is None or not path.is_file() else _read_lines(path, problems)

    for number, line in id_lines or []:
        why = check_image_id(line)
        if why is not None:
            problems.append(Problem(why, str(ids_path), number))
            continue
        if line in index:
            problems.append(Problem(f"duplicate image id {line!r} (first on line {index[line] + 1})",
                                    str(ids_path), number))
            continue
        index[line] = len(image_ids)
        image_ids.append(line)
    n = len(image_ids)

    def lookup(image_id: str, path: Path, number: int) -> int | None:
        i = index.get(image_id)
        if i is None:
            problems.append(Problem(f"unknown image id {image_id!r} (not in image_ids.txt)", str(path), number))
        return i

    # class labels
    labels = np.full(n, -1, dtype=np.int64)
    labels_path = folder / "class_labels.txt"
    label_lines = lines_of(labels_path)
    if id_lines is not None and not labels_path.is_file():
        problems.append(Problem("missing class_labels.txt", str(labels_path)))
    for number, line in label_lines or []:
        parts = line.split(",")
        if len(parts) != 2:
            problems.append(Problem(f"expected '<image_id>,<label>', got {len(parts)} fields",
                                    str(labels_path), number))
            continue
        i = lookup(parts[0], labels_path, number)
        label = _parse_int(parts[1], labels_path, number, "label", problems)
        if i is None or label is None:
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            known = f" (the dataset has {num_classes} classes)" if num_classes is not None else ""
            problems.append(Problem(f"unknown class {label}{known}", str(labels_path), number, "label"))
            continue
        if labels[i] >= 0:
            problems.append(Problem(f"second label for {parts[0]!r}", str(labels_path), number))
            continue
        labels[i] = label
    if label_lines is not None:  # an unreadable file is one problem, not one per image
        for i in np.flatnonzero(labels < 0):
            problems.append(Problem(f"no valid class label for {image_ids[i]!r}", str(labels_path)))

    # image sizes (optional: empty for OpenImages)
    sizes = np.full((n, 2), -1, dtype=np.int64)
    sizes_path = folder / "image_sizes.txt"
    for number, line in lines_of(sizes_path) or []:
        parts = line.split(",")
        if len(parts) != 3:
            problems.append(Problem(f"expected '<image_id>,<width>,<height>', got {len(parts)} fields",
                                    str(sizes_path), number))
            continue
        i = lookup(parts[0], sizes_path, number)
        w = _parse_int(parts[1], sizes_path, number, "width", problems)
        h = _parse_int(parts[2], sizes_path, number, "height", problems)
        if i is None or w is None or h is None:
            continue
        if w <= 0 or h <= 0:
            problems.append(Problem(f"image size must be positive, got {w}x{h}", str(sizes_path), number))
            continue
        sizes[i] = (w, h)

    # localization: boxes or masks, plus tedloc's masks.txt
    boxes: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n)]
    masks: list[list[str]] = [[] for _ in range(n)]
    ignores: list[str | None] = [None] * n
    for loc_name in ("localization.txt", "masks.txt"):
        loc_path = folder / loc_name
        for number, line in lines_of(loc_path) or []:
            parts = line.split(",")
            if len(parts) == 5 and loc_name == "localization.txt":
                i = lookup(parts[0], loc_path, number)
                coords = [_parse_int(p, loc_path, number, f, problems)
                          for p, f in zip(parts[1:], ("x0", "y0", "x1", "y1"))]
                if i is None or any(c is None for c in coords):
                    continue
                x0, y0, x1, y1 = coords
                if min(coords) < 0:
                    problems.append(Problem(f"negative box coordinate in {tuple(coords)}", str(loc_path), number))
                    continue
                if x1 < x0 or y1 < y0:
                    problems.append(Problem(f"box {tuple(coords)} has x1 < x0 or y1 < y0", str(loc_path), number))
                    continue
                w, h = sizes[i]
                if w > 0 and (x1 > w - 1 or y1 > h - 1):
                    problems.append(Problem(
                        f"box {tuple(coords)} lies outside the {w}x{h} image (inclusive coordinates: "
                        f"x1 <= {w - 1}, y1 <= {h - 1})", str(loc_path), number))
                    continue
                boxes[i].append((x0, y0, x1, y1))
            elif len(parts) == 3:
                i = lookup(parts[0], loc_path, number)
                if i is None:
                    continue
                mask, ignore = parts[1], parts[2]
                why = check_image_id(mask)
                if why is not None:
                    problems.append(Problem(why.replace("image id", "mask path"), str(loc_path), number, "mask"))
                    continue
                if not masks[i]:
                    if ignore:
                        why = check_image_id(ignore)
                        if why is not None:
                            problems.append(Problem(why.replace("image id", "ignore path"), str(loc_path),
                                                    number, "ignore"))
                            continue
                    ignores[i] = ignore or None
                elif ignore:
                    problems.append(Problem("only the first mask line of an image may name an ignore mask",
                                            str(loc_path), number, "ignore"))
                    continue
                masks[i].append(mask)
            else:
                expected = ("'<image_id>,<x0>,<y0>,<x1>,<y1>' or '<image_id>,<mask>,<ignore>'"
                            if loc_name == "localization.txt" else "'<image_id>,<mask>,<ignore>'")
                problems.append(Problem(f"expected {expected}, got {len(parts)} fields", str(loc_path), number))

    keep = [i for i in range(n) if labels[i] >= 0]
    split = Split(
        name=name,
        image_ids=[image_ids[i] for i in keep],
        labels=labels[keep],
        sizes=sizes[keep],
        boxes=[np.array(boxes[i], dtype=np.int64).reshape(-1, 4) for i in keep],
        mask_paths=[tuple(masks[i]) for i in keep],
        ignore_paths=[ignores[i] for i in keep],
        image_root=image_root,
        mask_root=mask_root,
    )
    return split, cap_problems(problems)


def write_split_metadata(split: Split, folder: str | os.PathLike) -> None:
    """Write ``split`` in the wsolevaluation format (plus ``masks.txt`` when it has boxes and masks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in split.image_ids:
        why = check_image_id(image_id)
        if why is not None or "," in image_id:
            raise DataError(why or f"image id {image_id!r} contains a comma, which the format cannot hold",
                            field="image_id")

    def text(lines: list[str]) -> str:
        return "".join(line + "\n" for line in lines)

    atomic_write_text(folder / "image_ids.txt", text(split.image_ids))
    atomic_write_text(folder / "class_labels.txt",
                      text([f"{i},{int(c)}" for i, c in zip(split.image_ids, split.labels)]))
    known = bool(len(split)) and bool((split.sizes > 0).all())
    atomic_write_text(folder / "image_sizes.txt",
                      text([f"{i},{w},{h}" for i, (w, h) in zip(split.image_ids, split.sizes)]) if known else "")
    box_lines = [f"{i},{x0},{y0},{x1},{y1}" for i, bs in zip(split.image_ids, split.boxes) for x0, y0, x1, y1 in bs]
    mask_lines = [
        f"{i},{m},{(ig or '') if k == 0 else ''}"
        for i, ms, ig in zip(split.image_ids, split.mask_paths, split.ignore_paths)
        for k, m in enumerate(ms)
    ]
    if box_lines or not mask_lines:
        atomic_write_text(folder / "localization.txt", text(box_lines))
        if mask_lines:
            atomic_write_text(folder / "masks.txt", text(mask_lines))
        elif (folder / "masks.txt").exists():
            (folder / "masks.txt").unlink()
    else:
        atomic_write_text(folder / "localization.txt", text(mask_lines))


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line; the line number minus one is the class index."""
    path = Path(path)
    problems: list[Problem] = []
    names = [line.strip() for _, line in _read_lines(path, problems) or []]
    if problems:
        raise DataError.from_problems(problems)
    if not names:
        raise DataError("no class names: the file is empty (one class name per line)", path)
    if len(set(names)) != len(names):
        seen: dict[str, int] = {}
        for k, name in enumerate(names):
            if name in seen:
                raise DataError(f"class name {name!r} repeats line {seen[name] + 1}", path, k + 1)
            seen[name] = k
    return names


def _resolve_root(root: Path, value: object, key: str, yaml_path: Path) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise DataError(f"must be a path (string) or null, got {value!r}", yaml_path, field=key)
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (root / p)


def _read_dataset_yaml(root: Path) -> dict:
    yaml_path = root / "dataset.yaml"
    if not yaml_path.is_file():
        raise DataError("not a tedloc dataset directory: dataset.yaml is missing "
                        "(make one with `tedloc data tinyimagenet|synthetic|import-wsol`)", yaml_path)
    try:
        info = yaml.safe_load(read_utf8(yaml_path)) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise DataError(f"invalid YAML: {getattr(e, 'problem', e)}", yaml_path,
                        None if line is None else line + 1) from None
    if not isinstance(info, dict):
        raise DataError("expected a mapping (name, image_root, mask_root)", yaml_path)
    return info


def load_dataset(
    root: str | os.PathLike, splits: list[str] | tuple[str, ...] | None = None, strict: bool = True
) -> WSOLDataset | tuple[WSOLDataset, list[Problem]]:
    """Load a tedloc dataset directory.

    Args:
        root: the dataset directory (``dataset.yaml``, ``class_names.txt``, ``metadata/<split>/``).
        splits: the splits to read; default: every folder under ``metadata/``.
        strict: raise a :class:`DataError` listing every problem (default); if False, return
            ``(dataset, problems)`` instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset directory not found", root)
    info = _read_dataset_yaml(root)
    yaml_path = root / "dataset.yaml"
    image_root = _resolve_root(root, info.get("image_root"), "image_root", yaml_path)
    mask_root = _resolve_root(root, info.get("mask_root"), "mask_root", yaml_path)
    names_path = root / "class_names.txt"
    if not names_path.is_file():
        raise DataError("missing class_names.txt (one class name per line)", names_path)
    class_names = read_class_names(names_path)
    kind = info.get("kind", "images")
    if kind not in DATASET_KINDS:
        raise DataError(f"must be one of {', '.join(DATASET_KINDS)}, got {kind!r}", yaml_path, field="kind")
    shot_splits = info.get("shot_splits", ["train"] if kind == "video" else [])
    if not isinstance(shot_splits, list) or not all(isinstance(s, str) for s in shot_splits):
        raise DataError(f"must be a list of split names, got {shot_splits!r}", yaml_path, field="shot_splits")
    meta = root / "metadata"
    available = sorted(p.name for p in meta.iterdir() if p.is_dir()) if meta.is_dir() else []
    order = [s for s in SPLIT_NAMES if s in available] + [s for s in available if s not in SPLIT_NAMES]
    wanted = list(splits) if splits is not None else order
    problems: list[Problem] = []
    result: dict[str, Split] = {}
    for name in wanted:
        if name not in available:
            raise DataError(f"no split {name!r}; available: {', '.join(order) or 'none'}", meta / name)
        split, found = read_split_metadata(meta / name, name, len(class_names), image_root, mask_root)
        split.shots = name in shot_splits
        if split.shots and split.has_boxes:
            found.append(Problem("a shot split has no boxes (annotated frames go to val/test)",
                                 str(meta / name / "localization.txt")))
        result[name] = split
        problems += found
    dataset = WSOLDataset(name=str(info.get("name", root.name)), class_names=class_names, splits=result, root=root,
                          kind=kind)
    if not strict:
        return dataset, problems
    if problems:
        raise DataError.from_problems(problems)
    return dataset


def save_dataset(
    dataset: WSOLDataset,
    root: str | os.PathLike,
    image_root: str | os.PathLike | None,
    mask_root: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``dataset`` as a tedloc dataset directory; roots are stored as given (relative or absolute)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(dataset.class_names):
        if not name or "\n" in name or name != name.strip():
            raise DataError(f"class name {name!r} is empty or has surrounding whitespace", field=f"class {k}")
    if len(set(dataset.class_names)) != len(dataset.class_names):
        raise DataError("class names must be unique", field="class_names")
    for name, split in dataset.splits.items():
        write_split_metadata(split, root / "metadata" / name)
    atomic_write_text(root / "class_names.txt", "".join(n + "\n" for n in dataset.class_names))
    info = {
        "name": dataset.name,
        "format": DATASET_FORMAT,
        "image_root": None if image_root is None else str(image_root),
        "mask_root": None if mask_root is None else str(mask_root),
        "num_classes": dataset.num_classes,
        "splits": list(dataset.splits),
    }
    if dataset.is_video:
        info.update(kind="video", shot_splits=[name for name, split in dataset.splits.items() if split.shots])
    info.update(extra or {})
    # dataset.yaml last: its presence marks a complete directory
    atomic_write_text(root / "dataset.yaml", yaml.safe_dump(info, sort_keys=False))
    return root
