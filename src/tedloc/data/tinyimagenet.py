"""Tiny ImageNet (Stanford CS231n) as a WSOL dataset: converter from the original layout and download.

Original layout: ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG`` with
``train/<wnid>/<wnid>_boxes.txt`` (``<file>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``), ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``). The unlabelled ``test/``
folder is ignored.

Splits: ``train`` = the official train images minus ``val_per_class`` per class, held out as
``val`` (with their boxes); ``test`` = the official val images. The held-out images of a class
are the ones with the smallest SHA-1 of their file name: a fixed, RNG-free choice that any
version of any library reproduces. Classes are ordered by sorted wnid (ImageNet's order);
names are the first synonym of ``words.txt``. Images are referenced, never copied: the
dataset's ``image_root`` is the source folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tedloc.data.dataset import Split, WSOLDataset
from tedloc.data.images import read_image_size
from tedloc.data.text_files import read_utf8
from tedloc.data.wsol_format import save_dataset
from tedloc.errors import DataError, Problem
from tedloc.utils.progress import progress

__all__ = ["convert_tinyimagenet", "download_tinyimagenet", "TINYIMAGENET_URL", "TINYIMAGENET_MD5"]

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def _clean_name(words: str) -> str:
    first = words.split(",")[0]
    return " ".join(first.split())


def _read_tsv(path: Path, fields: int, problems: list[Problem]) -> list[tuple[int, list[str]]]:
    rows = []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != fields:
            problems.append(Problem(f"expected {fields} tab-separated fields, got {len(parts)}", str(path), number))
            continue
        rows.append((number, parts))
    return rows


def _parse_box(parts: list[str], path: Path, number: int, problems: list[Problem]) -> tuple[int, ...] | None:
    try:
        box = tuple(int(p) for p in parts)
    except ValueError:
        problems.append(Problem(f"box coordinates must be integers, got {parts}", str(path), number))
        return None
    x0, y0, x1, y1 = box
    if min(box) < 0 or x1 < x0 or y1 < y0:
        problems.append(Problem(f"invalid box {box} (negative, or x1 < x0, or y1 < y0)", str(path), number))
        return None
    return box


def _held_out(files: list[str], n: int) -> set[str]:
    return set(sorted(files, key=lambda f: hashlib.sha1(f.encode()).hexdigest())[:n])


def _image_sizes(root: Path, ids: list[str], workers: int) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        sizes = list(progress(pool.map(lambda i: read_image_size(root / i), ids, chunksize=256),
                              desc="reading image sizes", total=len(ids), unit="img"))
    return np.array(sizes, dtype=np.int64).reshape(-1, 2)


def convert_tinyimagenet(
    src: str | os.PathLike, out: str | os.PathLike, val_per_class: int = 10, workers: int = 4,
    classes: int | None = None,
) -> Path:
    """Make a tedloc dataset directory at ``out`` from an extracted Tiny ImageNet at ``src`` (``classes``: only
    the first that many classes in sorted-wnid order, with their train, val and test images).

    Every problem of the source (a malformed line, a box outside its image, a missing image) is
    collected and raised as one :class:`DataError` naming files and lines; nothing is written then.
    """
    src = Path(src).resolve()
    problems: list[Problem] = []
    for required in ("wnids.txt", "words.txt", "train", "val/val_annotations.txt"):
        if not (src / required).exists():
            raise DataError(f"not an extracted Tiny ImageNet folder: {required} is missing", src / required)
    wnids_raw = [w.strip() for w in read_utf8(src / "wnids.txt").split()]
    wnids = sorted(set(wnids_raw))
    if len(wnids) != len(wnids_raw):
        raise DataError("wnids.txt lists a wnid twice", src / "wnids.txt")
    words: dict[str, str] = {}
    for number, line in enumerate(read_utf8(src / "words.txt").splitlines(), start=1):
        if "\t" in line:
            wnid, text = line.split("\t", 1)
            words[wnid.strip()] = text
    names = []
    for wnid in wnids:
        if wnid not in words:
            raise DataError(f"no entry for wnid {wnid}", src / "words.txt")
        names.append(_clean_name(words[wnid]))
    seen: dict[str, int] = {}
    for k, name in enumerate(names):  # disambiguate repeated first synonyms with the wnid
        if name in seen:
            names[k] = f"{name} ({wnids[k]})"
            first = seen[name]
            if not names[first].endswith(")"):
                names[first] = f"{name} ({wnids[first]})"
        else:
            seen[name] = k
    if classes is not None:
        if not 1 <= classes <= len(wnids):
            raise DataError(f"--classes must be in 1..{len(wnids)}, got {classes}", src / "wnids.txt")
        wnids, names = wnids[:classes], names[:classes]
    all_wnids = set(wnids_raw)
    label_of = {w: k for k, w in enumerate(wnids)}

    origin: dict[tuple[str, tuple], tuple[Path, int]] = {}  # (image id, box) -> (file, line)
    train_rows: list[tuple[str, int, list]] = []
    val_rows: list[tuple[str, int, list]] = []
    for wnid in progress(wnids, desc="train boxes", unit="class"):
        folder = src / "train" / wnid
        images_dir = folder / "images"
        if not images_dir.is_dir():
            problems.append(Problem("missing class folder", str(images_dir)))
            continue
        files = sorted(p.name for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        boxes: dict[str, list] = {f: [] for f in files}
        box_file = folder / f"{wnid}_boxes.txt"
        if box_file.is_file():
            for number, parts in _read_tsv(box_file, 5, problems):
                if parts[0] not in boxes:
                    problems.append(Problem(f"box for unknown image {parts[0]!r}", str(box_file), number))
                    continue
                box = _parse_box(parts[1:], box_file, number, problems)
                if box is not None:
                    boxes[parts[0]].append(box)
                    origin[(f"train/{wnid}/images/{parts[0]}", box)] = (box_file, number)
        if val_per_class >= len(files):
            raise DataError(f"--val-per-class {val_per_class} leaves no training image for {wnid} "
                            f"({len(files)} images)", images_dir)
        held = _held_out(files, val_per_class)
        for f in files:
            row = (f"train/{wnid}/images/{f}", label_of[wnid], boxes[f])
            (val_rows if f in held else train_rows).append(row)

    test_rows: list[tuple[str, int, list]] = []
    ann = src / "val" / "val_annotations.txt"
    for number, parts in _read_tsv(ann, 6, problems):
        if parts[1] not in label_of:
            if parts[1] in all_wnids:  # a class left out by ``classes``
                continue
            problems.append(Problem(f"unknown wnid {parts[1]!r} (not in wnids.txt)", str(ann), number, "wnid"))
            continue
        box = _parse_box(parts[2:], ann, number, problems)
        if box is not None:
            test_rows.append((f"val/images/{parts[0]}", label_of[parts[1]], [box]))
            origin[(f"val/images/{parts[0]}", box)] = (ann, number)

    if problems:
        raise DataError.from_problems(problems)

    splits = {}
    for name, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows)):
        ids = [r[0] for r in rows]
        sizes = _image_sizes(src, ids, workers)
        for (image_id, _, bs), (w, h) in zip(rows, sizes):
            for box in bs:
                if box[2] > w - 1 or box[3] > h - 1:
                    path, number = origin[(image_id, box)]
                    problems.append(Problem(f"box {box} lies outside the {w}x{h} image {image_id} "
                                            f"(inclusive coordinates)", str(path), number))
        splits[name] = Split(name, ids, [r[1] for r in rows], sizes, [r[2] for r in rows])
    if problems:
        raise DataError.from_problems(problems)
    dataset = WSOLDataset("tinyimagenet", names, splits)
    return save_dataset(dataset, out, image_root=str(src), extra={"wnids": wnids, "val_per_class": val_per_class})


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def download_tinyimagenet(out: str | os.PathLike, url: str = TINYIMAGENET_URL, val_per_class: int = 10) -> Path:
    """Download the official archive into ``out/source``, verify its MD5, extract, and convert into ``out``.

    Needs network access (not available on the machines the tests run on). A finished download
    is reused; a partial one restarts.
    """
    out = Path(out)
    source = out / "source"
    source.mkdir(parents=True, exist_ok=True)
    archive = source / "tiny-imagenet-200.zip"
    if not archive.exists() or _md5(archive) != TINYIMAGENET_MD5:
        part = archive.with_suffix(".zip.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = progress(iter(lambda: response.read(1 << 20), b""), desc="download",
                               total=None if total is None else -(-total // (1 << 20)), unit="MiB")
                for chunk in bar:
                    f.write(chunk)
        except OSError as e:
            raise DataError(f"download failed ({e}); download the archive by hand and run "
                            f"`tedloc data tinyimagenet --src <extracted folder>`", url) from None
        if _md5(part) != TINYIMAGENET_MD5:
            raise DataError(f"MD5 mismatch (expected {TINYIMAGENET_MD5}); the download is corrupt", part)
        os.replace(part, archive)
    extracted = source / "tiny-imagenet-200"
    if not (extracted / "wnids.txt").exists():
        tmp = source / "extract.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        if extracted.exists():
            shutil.rmtree(extracted)
        os.replace(tmp / "tiny-imagenet-200", extracted)
        shutil.rmtree(tmp)
    return convert_tinyimagenet(extracted, out, val_per_class=val_per_class)
