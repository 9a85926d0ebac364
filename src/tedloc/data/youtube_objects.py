"""YouTube-Objects v1.0 and v2.2 as tedloc video datasets (TrCAM-V's splits).

Both converters write a video dataset directory (``dataset.yaml``: ``kind: video``, ``shot_splits: [train]``):
``train`` ids are **shot folders** (label = the video's class, size unknown, no box); ``val`` and ``test`` ids
are **annotated frames** with their ``(w, h)`` and one or more boxes. Classes, in index order, are
:data:`YTO_CLASSES`; all ten class folders must be present (a missing one is a :class:`DataError`).

**v1.0** (:func:`convert_ytov1`): raw ``<class>/sets/{train,test}.txt`` (video ids) and
``<class>/data/<video>/shots/<shot>/frameNNNN.jpg``, a labelled frame having a sidecar
``frameNNNN.jpg_sticks.mat`` whose variable ``coor`` is a cell array of ``[x0 y0 x1 y1]`` boxes (an N×4
numeric array is accepted too). The raw tree is the image root: nothing is copied.

- val: per class, the original-train videos holding any ``*_sticks.mat``, sorted by id, shuffled 1000 times
  with ``random.Random(class index).shuffle`` (the public code's ``set_seed(class index)`` then
  ``random.shuffle``), of which the first 5 (all of them when fewer) are val; only their annotated frames
  are used. Every other original-train video, labelled or not, gives its shots to train; shots without a
  ``.jpg`` frame are skipped (listed in ``conversion.json``). test: the annotated frames of the test videos.
- hand fixes (as the public code): ``horse/data/0004/shots/055/frame0020.jpg``: x0 and x1 swapped (where
  x1 < x0); ``boat/data/0006/shots/026/frame0001.jpg``: x1 set to w-1 where x1 > w.

**v2.2** (:func:`convert_ytov2`): raw flat frames ``<class>/<8-digit>.jpg``; ``Ranges/ranges_<class>.mat``
(variable ``ranges``, 3×N: shot start frame, end frame (inclusive), video id; shot ``i`` is column ``i``);
``GroundTruth/<class>/bb_gt{Training,Test}_<class>.mat`` (variables ``bb_gtTraining`` / ``bb_gtTest``, a
struct array whose records hold a frame id ``<class><frame number>`` and an N×4 ``boxes`` array; the
fields are taken by name ``boxes`` where present, else by position). Frames are re-laid out as
``<out>/frames/<class>/video-VVVV/shot-SSSSSS/FFFFFFFF.jpg`` by symlinks to the raw files (absolute
targets; hard links, then copies, where symlinks fail); the image root is ``frames``. Every frame of every
shot of a kept video is linked, so val/test frames keep their temporal context.

- A video is train (test) if any frame of its shots has a Training (Test) box; videos without boxes are
  dropped; a video with both is a :class:`DataError`. val = the first 3 train videos of each class in Ranges
  order (order of first appearance), their Training-annotated frames; train = every shot of the other
  train videos; test = the Test-annotated frames.
- A frame listed in two shots (the raw horse ranges repeat one) is linked in both; its boxes go to the
  later shot, as in the public code. Raw frames missing from an unannotated shot are counted; a shot
  with none of its frames is skipped.

**Boxes** (both; coordinates are floats in the raw files, v2.2's apparently 1-based and reaching w, kept
as they are like the public code): a non-finite value or ``x1 < x0``/``y1 < y0`` (after the hand fixes)
is a DataError; a box entirely outside the frame (``x1 < 0``, ``y1 < 0``, ``x0 >= w`` or ``y0 >= h``) is
dropped and counted; negative coordinates are set to 0; coordinates are floored to the pixel containing
them (the public code keeps floats and truncates after scaling); ``x1``/``y1`` beyond the frame are
clipped to ``w-1``/``h-1`` and counted. Annotated frames left with no box are left out and listed.
Frame sizes come from the image headers. Ids are sorted in every split (the public code keeps file-system
or ground-truth order).

Any other bad input (missing folder, sets, Ranges or GroundTruth file; a ``.mat`` file that cannot be read,
lacks its variable or has another shape; a missing annotated frame) is a one-line :class:`DataError`
naming the file, raised before anything is written. The dataset is built in ``<out>.partial`` and renamed
to ``out`` at the end; an existing non-empty ``out`` is refused unless ``force``. ``out/conversion.json``
reports per-split counts, box corrections, skipped shots and warnings.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from tedloc.data.dataset import Split, WSOLDataset
from tedloc.data.images import read_image_size
from tedloc.data.wsol_format import save_dataset
from tedloc.errors import DataError
from tedloc.utils.io import atomic_write_text
from tedloc.utils.progress import progress

__all__ = ["CONVERSION_REPORT", "V1_VAL_VIDEOS_PER_CLASS", "V2_VAL_VIDEOS_PER_CLASS", "YTO_CLASSES", "convert_ytov1",
           "convert_ytov2", "v1_val_videos"]

YTO_CLASSES = ("aeroplane", "bird", "boat", "car", "cat", "cow", "dog", "horse", "motorbike", "train")
CONVERSION_REPORT = "conversion.json"
V1_VAL_VIDEOS_PER_CLASS = 5
V2_VAL_VIDEOS_PER_CLASS = 3
V1_SHUFFLES = 1000  # the public code shuffles the sorted labelled videos this many times
VIDEO_EXTRA = {"kind": "video", "shot_splits": ["train"]}
_STICKS = "_sticks.mat"
_LISTED = 50  # items listed per category in conversion.json (the counts are complete)
_V1_SWAP_X = "horse/data/0004/shots/055/frame0020.jpg"
_V1_CLIP_X1 = "boat/data/0006/shots/026/frame0001.jpg"


@dataclass
class _Report:
    """What the conversion corrected, dropped or skipped."""

    negative_set_to_zero: int = 0
    clipped: int = 0
    dropped_outside: list[str] = field(default_factory=list)
    hand_fixes: list[str] = field(default_factory=list)
    frames_without_boxes: list[str] = field(default_factory=list)
    skipped_shots: list[str] = field(default_factory=list)
    missing_frames: list[str] = field(default_factory=list)
    frames_in_two_shots: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per kind of problem found."""
        lines = []
        for items, what in ((self.dropped_outside, "boxes entirely outside their frame were dropped"),
                            (self.frames_without_boxes, "annotated frames have no box left and were left out"),
                            (self.skipped_shots, "shots without frames were skipped"),
                            (self.missing_frames, "frames listed in Ranges are missing from the raw tree"),
                            (self.frames_in_two_shots, "frames are listed in two shots (linked in both)")):
            if items:
                lines.append(f"{len(items)} {what}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}")
        return lines

    def to_dict(self) -> dict:
        """The JSON part of ``conversion.json`` about corrections and warnings."""
        def listed(items: list[str]) -> dict:
            return {"count": len(items), "first": items[:_LISTED]}

        return {
            "boxes": {"negative_set_to_zero": self.negative_set_to_zero, "clipped": self.clipped,
                      "dropped_outside": listed(self.dropped_outside), "hand_fixes": self.hand_fixes},
            "frames_without_boxes": listed(self.frames_without_boxes),
            "skipped_shots": listed(self.skipped_shots),
            "missing_frames": listed(self.missing_frames),
            "frames_in_two_shots": listed(self.frames_in_two_shots),
            "warnings": self.warnings(),
        }


@dataclass
class _Frame:
    """An annotated frame: its id, label, source file (for its size) and raw boxes (float, n×4)."""

    image_id: str
    label: int
    file: Path
    boxes: np.ndarray
    origin: Path  # the annotation file
    video: str


# ---------------------------------------------------------------------------------------------------- helpers


def _check_out(out: Path, raw: Path, force: bool) -> None:
    out_abs = out.resolve()
    if out_abs == raw or out_abs in raw.parents:
        raise DataError("the output directory must not contain the raw dataset", out)
    if out.exists() and not out.is_dir():
        if not force:
            raise DataError("exists and is not a directory; choose another --out or pass --force", out)
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise DataError("exists and is not empty; choose another --out or pass --force", out)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"missing {what}", path)
    return path


def _load_mat(path: Path, variable: str) -> np.ndarray:
    """``variable`` of the .mat file ``path`` (DataError naming the file when absent or unreadable)."""
    if not path.is_file():
        raise DataError(f"missing .mat file (expected variable {variable!r})", path)
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - scipy raises many types on a damaged or foreign file
        raise DataError(f"cannot read .mat file ({type(e).__name__}: {e})".replace("\n", " "), path) from None
    if variable not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataError(f"no variable {variable!r} in the .mat file (found: {found})", path)
    return data[variable]


def _numbers(value, path: Path, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected numbers, got {np.asarray(value).dtype}", path) from None
    if not np.isfinite(array).all():
        raise DataError(f"{what}: non-finite value", path)
    return array


def _clean_boxes(frame: _Frame, size: tuple[int, int], report: _Report,
                 fix: Callable[[list[float], tuple[int, int]], tuple[list[float], str | None]] | None = None,
                 ) -> np.ndarray:
    """The frame's boxes as int (n, 4) inclusive pixels: fixed, checked, dropped or clipped (module docstring)."""
    w, h = size
    out = []
    for number, raw_box in enumerate(frame.boxes, start=1):
        box = [float(v) for v in raw_box]
        if fix is not None:
            box, note = fix(box, size)
            if note:
                report.hand_fixes.append(f"{frame.image_id}: {note}")
        x0, y0, x1, y1 = box
        if x1 < x0 or y1 < y0:
            raise DataError(f"box {number} of {frame.image_id} is inverted: {raw_box.tolist()} "
                            f"(x0 y0 x1 y1 with x1 < x0 or y1 < y0)", frame.origin)
        if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
            report.dropped_outside.append(f"{frame.image_id} {[round(v, 2) for v in raw_box.tolist()]}")
            continue
        if min(box) < 0:
            report.negative_set_to_zero += 1
        x0, y0, x1, y1 = (math.floor(max(v, 0.0)) for v in box)
        if x1 > w - 1 or y1 > h - 1:
            report.clipped += 1
            x1, y1 = min(x1, w - 1), min(y1, h - 1)
        out.append((x0, y0, x1, y1))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def _eval_split(name: str, frames: list[_Frame], report: _Report,
                fix_for: Callable[[str], Callable | None] = lambda image_id: None) -> tuple[Split, dict]:
    """A val/test split of annotated frames, sorted by id, and its counts."""
    ids, labels, sizes, boxes = [], [], [], []
    for frame in progress(sorted(frames, key=lambda f: f.image_id), desc=f"{name} frames", unit="frame"):
        size = read_image_size(frame.file)
        frame_boxes = _clean_boxes(frame, size, report, fix_for(frame.image_id))
        if not len(frame_boxes):
            report.frames_without_boxes.append(frame.image_id)
            continue
        ids.append(frame.image_id)
        labels.append(frame.label)
        sizes.append(size)
        boxes.append(frame_boxes)
    kept = set(ids)
    counts = {"videos": len({f.video for f in frames if f.image_id in kept}), "frames": len(ids),
              "boxes": int(sum(len(b) for b in boxes))}
    return Split(name, ids, labels, np.array(sizes, dtype=np.int64).reshape(-1, 2), boxes), counts


def _shot_split(shots: list[tuple[str, int]]) -> Split:
    shots = sorted(shots)
    n = len(shots)
    return Split("train", [s for s, _ in shots], [label for _, label in shots], np.full((n, 2), -1),
                 [np.zeros((0, 4), dtype=np.int64)] * n)


def _write(dataset: WSOLDataset, out: Path, image_root: str, report: dict,
           fill: Callable[[Path], None] | None = None) -> Path:
    """Build the directory in ``<out>.partial`` (``fill`` adds files there first), then put it at ``out``."""
    partial = out.with_name(out.name + ".partial")
    if partial.is_symlink() or partial.is_file():
        partial.unlink()
    elif partial.exists():
        shutil.rmtree(partial)
    try:
        partial.mkdir(parents=True)
        if fill is not None:
            fill(partial)
        atomic_write_text(partial / CONVERSION_REPORT, json.dumps(report, indent=2) + "\n")
        save_dataset(dataset, partial, image_root=image_root, extra={**VIDEO_EXTRA, "source": report["source"]})
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


# -------------------------------------------------------------------------------------------------------- v1


def _read_video_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError("missing video list (one video id per line)", path)
    videos: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        video = line.strip()
        if not video:
            continue
        if not video.isdigit():
            raise DataError(f"expected a video id of digits (e.g. 0001), got {video!r}", path, number)
        if video in videos:
            raise DataError(f"video {video} listed twice", path, number)
        videos.append(video)
    return videos


def _v1_shots(video_dir: Path) -> list[Path]:
    shots_dir = _require_dir(video_dir / "shots", "shots folder of a listed video")
    return sorted((p for p in shots_dir.iterdir() if p.is_dir()), key=lambda p: p.name)


def _has_annotations(video_dir: Path) -> bool:
    """Whether any ``*_sticks.mat`` lies under ``video_dir`` (the public code's 'labelled video')."""
    return any(name.endswith(_STICKS) for _, _, files in os.walk(video_dir) for name in files)


def _v1_boxes(path: Path) -> np.ndarray:
    """The boxes of a ``*_sticks.mat`` file as float (n, 4)."""
    coor = _load_mat(path, "coor")
    if coor.dtype == object:
        rows = []
        for number, element in enumerate(coor.reshape(-1), start=1):
            box = _numbers(element, path, f"coor box {number}")
            if box.size != 4:
                raise DataError(f"coor box {number} has {box.size} numbers (shape {box.shape}), expected 4 "
                                f"(x0 y0 x1 y1)", path)
            rows.append(box.reshape(4))
        return np.array(rows, dtype=np.float64).reshape(-1, 4)
    boxes = _numbers(coor, path, "coor")
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"coor has shape {boxes.shape}, expected a cell array of boxes or an N×4 array", path)
    return boxes


def _v1_annotated_frames(video_dir: Path, raw: Path, label: int, video: str) -> list[_Frame]:
    frames = []
    for shot in _v1_shots(video_dir):
        for mat in sorted(p for p in shot.iterdir() if p.name.endswith(_STICKS)):
            image = mat.with_name(mat.name[: -len(_STICKS)])
            if not image.is_file():
                raise DataError(f"annotated frame file is missing (its boxes are in {mat.name})", image)
            frames.append(_Frame(image.relative_to(raw).as_posix(), label, image, _v1_boxes(mat), mat, video))
    return frames


def _v1_fix(image_id: str) -> Callable | None:
    """The public code's two hand fixes, for the two frames that need them."""
    if image_id == _V1_SWAP_X:
        def swap(box: list[float], size: tuple[int, int]) -> tuple[list[float], str | None]:
            if box[2] < box[0]:
                return [box[2], box[1], box[0], box[3]], f"swapped x0 and x1 of {box}"
            return box, None
        return swap
    if image_id == _V1_CLIP_X1:
        def clip(box: list[float], size: tuple[int, int]) -> tuple[list[float], str | None]:
            if box[2] > size[0]:
                return [box[0], box[1], size[0] - 1, box[3]], f"x1 {box[2]} set to w-1 = {size[0] - 1}"
            return box, None
        return clip
    return None


def v1_val_videos(labelled: list[str], class_index: int, count: int = V1_VAL_VIDEOS_PER_CLASS) -> list[str]:
    """The public code's val videos of a class: the sorted labelled videos shuffled ``V1_SHUFFLES`` times by
    ``random.Random(class_index)``, first ``count`` (all when fewer)."""
    videos = sorted(labelled)
    rng = random.Random(class_index)
    for _ in range(V1_SHUFFLES):
        rng.shuffle(videos)
    return videos[:count]


def convert_ytov1(raw: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Make a video dataset directory at ``out`` from raw YouTube-Objects v1.0 at ``raw`` (module docstring)."""
    raw = Path(raw).resolve()
    out = Path(out)
    _require_dir(raw, "raw YouTube-Objects v1.0 folder")
    _check_out(out, raw, force)
    report = _Report()
    train_shots: list[tuple[str, int]] = []
    train_videos: set[str] = set()
    train_frames = 0
    val_frames: list[_Frame] = []
    test_frames: list[_Frame] = []
    val_videos: dict[str, list[str]] = {}
    for label, name in enumerate(progress(YTO_CLASSES, desc="YTOv1 classes", unit="class")):
        class_dir = _require_dir(raw / name, f"class folder (YouTube-Objects v1.0 has {len(YTO_CLASSES)} classes)")
        train_list = _read_video_list(class_dir / "sets" / "train.txt")
        test_list = _read_video_list(class_dir / "sets" / "test.txt")
        both = sorted(set(train_list) & set(test_list))
        if both:
            raise DataError(f"video {both[0]} is listed in both train.txt and test.txt", class_dir / "sets")
        for video in train_list + test_list:
            _require_dir(class_dir / "data" / video, f"folder of video {video} (listed in {name}/sets)")
        labelled = [v for v in train_list if _has_annotations(class_dir / "data" / v)]
        val_videos[name] = sorted(v1_val_videos(labelled, label))
        for video in sorted(train_list):
            video_dir = class_dir / "data" / video
            if video in val_videos[name]:
                val_frames += _v1_annotated_frames(video_dir, raw, label, f"{name}/{video}")
                continue
            for shot in _v1_shots(video_dir):
                shot_id = shot.relative_to(raw).as_posix()
                frames = sum(1 for e in os.scandir(shot) if e.is_file() and e.name.lower().endswith(".jpg"))
                if not frames:
                    report.skipped_shots.append(shot_id)
                    continue
                train_shots.append((shot_id, label))
                train_videos.add(f"{name}/{video}")
                train_frames += frames
        for video in sorted(test_list):
            test_frames += _v1_annotated_frames(class_dir / "data" / video, raw, label, f"{name}/{video}")

    val, val_counts = _eval_split("val", val_frames, report, _v1_fix)
    test, test_counts = _eval_split("test", test_frames, report, _v1_fix)
    train = _shot_split(train_shots)
    dataset = WSOLDataset("YouTube-Objects-v1.0", list(YTO_CLASSES), {"train": train, "val": val, "test": test})
    summary = {
        "source": "YouTube-Objects v1.0",
        "raw": str(raw),
        "splits": {"train": {"videos": len(train_videos), "shots": len(train), "frames": train_frames},
                   "val": val_counts, "test": test_counts},
        "val_videos": val_videos,
        **report.to_dict(),
    }
    return _write(dataset, out, str(raw), summary)


# -------------------------------------------------------------------------------------------------------- v2.2


@dataclass
class _Shot:
    index: int  # column of Ranges: the shot number of the re-laid-out tree
    video: int
    start: int
    end: int

    def shot_id(self, name: str) -> str:
        return f"{name}/video-{self.video:04d}/shot-{self.index:06d}"


def _v2_ranges(path: Path) -> list[_Shot]:
    ranges = _numbers(_load_mat(path, "ranges"), path, "ranges")
    if ranges.ndim != 2 or ranges.shape[0] != 3:
        raise DataError(f"ranges has shape {ranges.shape}, expected 3×N (shot start, shot end, video)", path)
    if (ranges != np.round(ranges)).any():
        raise DataError("ranges holds non-integer frame or video numbers", path)
    shots = []
    for i, (start, end, video) in enumerate(ranges.astype(np.int64).T):
        if start < 0 or end < start or video < 0:
            raise DataError(f"shot {i} (column {i + 1}) has start {start}, end {end}, video {video}: expected "
                            f"0 <= start <= end and video >= 0", path)
        shots.append(_Shot(i, int(video), int(start), int(end)))
    return shots


def _frame_number(value, name: str, path: Path, number: int) -> int:
    text = np.asarray(value).reshape(-1)
    if text.size != 1:
        raise DataError(f"entry {number}: expected one frame id, got shape {np.asarray(value).shape}", path)
    ident = str(text[0]).strip()
    digits = ident.removeprefix(name)
    if not digits.isdigit():
        raise DataError(f"entry {number}: frame id {ident!r} is not '{name}<frame number>'", path)
    return int(digits)


def _v2_ground_truth(path: Path, variable: str, name: str) -> list[tuple[int, np.ndarray]]:
    """(frame number, float (n, 4) boxes) of each record of a ``bb_gt*`` file."""
    gt = _load_mat(path, variable)
    if gt.size == 0:
        return []
    fields = gt.dtype.names
    if not fields or len(fields) < 2:
        raise DataError(f"{variable} is not a struct array of (frame id, boxes) records "
                        f"(dtype {gt.dtype}, shape {gt.shape})", path)
    boxes_field = "boxes" if "boxes" in fields else fields[1]
    id_field = next(f for f in fields if f != boxes_field)
    records = []
    seen: set[int] = set()
    for number, record in enumerate(gt.reshape(-1), start=1):
        frame = _frame_number(record[id_field], name, path, number)
        if frame in seen:
            raise DataError(f"entry {number}: frame {frame} annotated twice", path)
        seen.add(frame)
        boxes = _numbers(record[boxes_field], path, f"entry {number} (frame {frame})")
        if boxes.size == 0:
            boxes = np.zeros((0, 4))
        elif boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataError(f"entry {number} (frame {frame}): boxes have shape {boxes.shape}, expected N×4", path)
        records.append((frame, boxes))
    return records


def _link(source: Path, target: Path, mode: list[str]) -> None:
    """Symlink ``target`` -> ``source``; once that fails, hard links, then copies (``mode[0]`` remembers)."""
    while True:
        try:
            if mode[0] == "symlink":
                os.symlink(source, target)
            elif mode[0] == "hardlink":
                os.link(source, target)
            else:
                shutil.copy2(source, target)
            return
        except OSError:
            if mode[0] == "copy":
                raise
            mode[0] = "hardlink" if mode[0] == "symlink" else "copy"


def convert_ytov2(raw: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Make a video dataset directory at ``out`` from raw YouTube-Objects v2.2 at ``raw`` (module docstring)."""
    raw = Path(raw).resolve()
    out = Path(out)
    _require_dir(raw, "raw YouTube-Objects v2.2 folder")
    _check_out(out, raw, force)
    report = _Report()
    links: list[tuple[Path, str]] = []  # (raw file, path under frames/)
    train_shots: list[tuple[str, int]] = []
    train_videos: set[str] = set()
    train_frames = 0
    val_frames: list[_Frame] = []
    test_frames: list[_Frame] = []
    val_videos: dict[str, list[str]] = {}
    dropped_videos = 0
    for label, name in enumerate(progress(YTO_CLASSES, desc="YTOv2.2 classes", unit="class")):
        class_dir = _require_dir(raw / name, f"class folder (YouTube-Objects v2.2 has {len(YTO_CLASSES)} classes)")
        ranges_path = raw / "Ranges" / f"ranges_{name}.mat"
        shots = _v2_ranges(ranges_path)
        shot_of: dict[int, _Shot] = {}  # frame -> its (last) shot, as in the public code
        for shot in shots:
            for frame in range(shot.start, shot.end + 1):
                if frame in shot_of:
                    report.frames_in_two_shots.append(f"{name}/{frame:08d}")
                shot_of[frame] = shot
        gt_dir = raw / "GroundTruth" / name
        annotated: dict[str, list[tuple[int, np.ndarray]]] = {}
        video_kind: dict[int, str] = {}
        gt_paths = {"train": gt_dir / f"bb_gtTraining_{name}.mat", "test": gt_dir / f"bb_gtTest_{name}.mat"}
        for kind, variable in (("train", "bb_gtTraining"), ("test", "bb_gtTest")):
            path = gt_paths[kind]
            annotated[kind] = _v2_ground_truth(path, variable, name)
            for frame, _ in annotated[kind]:
                if frame not in shot_of:
                    raise DataError(f"frame {frame} lies in no shot of {ranges_path.name}", path)
                video = shot_of[frame].video
                if video_kind.setdefault(video, kind) != kind:
                    raise DataError(f"video {video} has both Training and Test boxes (frame {frame})", path)
        videos = list(dict.fromkeys(s.video for s in shots))  # Ranges order
        dropped_videos += sum(1 for v in videos if v not in video_kind)
        train_order = [v for v in videos if video_kind.get(v) == "train"]
        val_set = set(train_order[:V2_VAL_VIDEOS_PER_CLASS])
        val_videos[name] = [f"video-{v:04d}" for v in train_order[:V2_VAL_VIDEOS_PER_CLASS]]

        for shot in shots:
            if shot.video not in video_kind:
                continue
            shot_id = shot.shot_id(name)
            present = []
            for frame in range(shot.start, shot.end + 1):
                source = class_dir / f"{frame:08d}.jpg"
                if source.is_file():
                    present.append(frame)
                    links.append((source, f"{shot_id}/{frame:08d}.jpg"))
                else:
                    report.missing_frames.append(f"{name}/{frame:08d}.jpg")
            if not present:
                report.skipped_shots.append(shot_id)
            elif video_kind[shot.video] == "train" and shot.video not in val_set:
                train_shots.append((shot_id, label))
                train_videos.add(f"{name}/video-{shot.video:04d}")
                train_frames += len(present)
        for kind, records in annotated.items():
            for frame, boxes in records:
                shot = shot_of[frame]
                if kind == "train" and shot.video not in val_set:
                    continue  # weak supervision: train videos keep only their label
                source = class_dir / f"{frame:08d}.jpg"
                if not source.is_file():
                    raise DataError(f"annotated frame file is missing (its boxes are in {gt_paths[kind].name})",
                                    source)
                item = _Frame(f"{shot.shot_id(name)}/{frame:08d}.jpg", label, source, boxes, gt_paths[kind],
                              f"{name}/video-{shot.video:04d}")
                (val_frames if kind == "train" else test_frames).append(item)

    val, val_counts = _eval_split("val", val_frames, report)
    test, test_counts = _eval_split("test", test_frames, report)
    train = _shot_split(train_shots)
    dataset = WSOLDataset("YouTube-Objects-v2.2", list(YTO_CLASSES), {"train": train, "val": val, "test": test})
    link_mode = ["symlink"]

    def fill(partial: Path) -> None:
        made: set[Path] = set()
        for source, relative in progress(links, desc="linking frames", unit="frame"):
            target = partial / "frames" / relative
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            _link(source, target, link_mode)
        summary["link_mode"] = link_mode[0] if links else None

    summary = {
        "source": "YouTube-Objects v2.2",
        "raw": str(raw),
        "splits": {"train": {"videos": len(train_videos), "shots": len(train), "frames": train_frames},
                   "val": val_counts, "test": test_counts},
        "val_videos": val_videos,
        "dropped_videos_without_boxes": dropped_videos,
        "linked_frames": len(links),
        "link_mode": None,
        **report.to_dict(),
    }
    return _write(dataset, out, "frames", summary, fill)
