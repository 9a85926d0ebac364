"""YouTube-Objects v1.0 / v2.2 converters on fake raw trees of both layouts (all ten classes, tiny frames)."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from tedloc.data import load_dataset
from tedloc.data.youtube_objects import YTO_CLASSES, convert_ytov1, convert_ytov2, v1_val_videos
from tedloc.errors import DataError

BIG, SMALL = (48, 36), (40, 30)


def _jpeg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path, quality=50)


# ------------------------------------------------------------------------------------------------ v1 fake tree


def _sticks(frame: Path, boxes: list, numeric: bool = False) -> None:
    """``frame``'s ``_sticks.mat``: ``coor`` a 1×n cell array of 1×4 boxes, as the real files (or an n×4 array)."""
    if numeric:
        coor = np.array(boxes, dtype=float).reshape(-1, 4)
    else:
        coor = np.empty((1, len(boxes)), dtype=object)
        for i, box in enumerate(boxes):
            coor[0, i] = np.array([box], dtype=float)
    scipy.io.savemat(f"{frame}_sticks.mat", {"coor": coor})


def _v1_video(class_dir: Path, video: str, shots: dict) -> None:
    """``shots``: shot -> {frame name: boxes or None}; frame0005 frames are 40x30, the others 48x36."""
    (class_dir / "data" / video / "shots").mkdir(parents=True, exist_ok=True)
    for shot, frames in shots.items():
        shot_dir = class_dir / "data" / video / "shots" / shot
        shot_dir.mkdir(parents=True, exist_ok=True)
        for name, boxes in frames.items():
            _jpeg(shot_dir / name, SMALL if "0005" in name else BIG)
            if boxes is not None:
                _sticks(shot_dir / name, boxes, numeric=isinstance(boxes, tuple))


def _fake_v1(raw: Path) -> Path:
    """All ten classes; each default class: train video 0001 (unlabelled, 1 shot of 2 frames) and test video
    0020 (one annotated frame). aeroplane, bird, boat and horse carry the cases under test."""
    labelled = {"001": {"frame0001.jpg": [[1, 1, 10, 10]]}, "002": {"frame0001.jpg": None}}
    unlabelled = {"001": {"frame0001.jpg": None, "frame0002.jpg": None}}
    for name in YTO_CLASSES:
        train = {"0001": unlabelled}
        test = {"0020": {"001": {"frame0001.jpg": [[2, 3, 20, 25]]}}}
        if name == "aeroplane":  # 7 labelled train videos: 5 go to val by the seeded shuffle
            train = {f"{v:04d}": labelled for v in range(1, 8)}
            train["0008"] = {"001": {"frame0001.jpg": None}, "002": {}}  # shot 002 has no frame
            test["0009"] = {
                "001": {"frame0001.jpg": [[-3, -2, 60, 20], [50, 1, 55, 5]]},  # 0 / clipped; second outside
                "002": {"frame0001.jpg": [[100, 100, 120, 130]]},  # its only box is outside: frame left out
                "003": {"frame0005.jpg": ((2.7, 3.2, 20.9, 25.5), (0, 0, 39, 29))},  # n×4 numeric, 40x30
            }
        elif name == "bird":  # 3 labelled train videos (< 5): all of them val
            train = {"0001": labelled, "0002": labelled, "0003": labelled, "0004": unlabelled}
        elif name == "boat":  # the x1 > w hand fix
            train = {"0001": unlabelled, "0006": {"026": {"frame0001.jpg": [[5, 2, 60, 30]]}}}
        elif name == "horse":  # the swapped-x hand fix
            test["0004"] = {"055": {"frame0020.jpg": [[30, 2, 5, 20]]}}
        class_dir = raw / name
        (class_dir / "sets").mkdir(parents=True)
        (class_dir / "sets" / "train.txt").write_text("".join(v + "\n" for v in train))
        (class_dir / "sets" / "test.txt").write_text("".join(v + "\n" for v in test))
        for video, shots in {**train, **test}.items():
            _v1_video(class_dir, video, shots)
    (raw / "vo-release").mkdir()  # other folders of the release are ignored
    return raw


@pytest.fixture(scope="module")
def v1_converted(tmp_path_factory) -> tuple[Path, Path]:
    """(raw, out) of one conversion, shared by the tests that only read it (each write fsyncs: slow disks)."""
    root = tmp_path_factory.mktemp("ytov1")
    raw = _fake_v1(root / "raw").resolve()
    (root / "out").mkdir()  # an existing empty folder is fine
    return raw, convert_ytov1(raw, root / "out")


def test_v1_splits(v1_converted):
    v1_raw, out = v1_converted
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["kind"] == "video" and info["shot_splits"] == ["train"] and info["image_root"] == str(v1_raw)
    ds = load_dataset(out)
    assert ds.class_names == list(YTO_CLASSES)
    train, val, test = ds["train"], ds["val"], ds["test"]

    aero_val = ["0001", "0003", "0004", "0006", "0007"]  # random.Random(0), 1000 shuffles of 0001..0007
    expected_val = ([f"aeroplane/data/{v}/shots/001/frame0001.jpg" for v in aero_val]
                    + [f"bird/data/{v}/shots/001/frame0001.jpg" for v in ("0001", "0002", "0003")]
                    + ["boat/data/0006/shots/026/frame0001.jpg"])
    assert val.image_ids == expected_val
    assert val.labels.tolist() == [0] * 5 + [1] * 3 + [2]
    assert [b.tolist() for b in val.boxes] == [[[1, 1, 10, 10]]] * 8 + [[[5, 2, 47, 30]]]  # boat: x1 -> w-1
    assert val.sizes.tolist() == [list(BIG)] * 9

    expected_train = ([f"aeroplane/data/{v}/shots/{s}" for v in ("0002", "0005") for s in ("001", "002")]
                      + ["aeroplane/data/0008/shots/001", "bird/data/0004/shots/001", "boat/data/0001/shots/001"]
                      + [f"{c}/data/0001/shots/001" for c in YTO_CLASSES[3:]])
    assert train.image_ids == expected_train
    assert train.labels.tolist() == [0] * 5 + [1, 2] + list(range(3, 10))
    assert (train.sizes == -1).all() and not train.has_boxes
    assert all((v1_raw / i).is_dir() for i in train.image_ids)

    test_boxes = {i: b.tolist() for i, b in zip(test.image_ids, test.boxes)}
    assert len(test) == 13 and test.num_boxes == 14
    assert test_boxes["aeroplane/data/0009/shots/001/frame0001.jpg"] == [[0, 0, 47, 20]]  # negatives 0, x1 clipped
    assert "aeroplane/data/0009/shots/002/frame0001.jpg" not in test_boxes  # no box left
    assert test_boxes["aeroplane/data/0009/shots/003/frame0005.jpg"] == [[2, 3, 20, 25], [0, 0, 39, 29]]  # floored
    assert test_boxes["horse/data/0004/shots/055/frame0020.jpg"] == [[5, 2, 30, 20]]  # x0/x1 swapped
    assert test_boxes["cow/data/0020/shots/001/frame0001.jpg"] == [[2, 3, 20, 25]]
    sizes = dict(zip(test.image_ids, map(tuple, test.sizes.tolist())))
    assert sizes["aeroplane/data/0009/shots/003/frame0005.jpg"] == SMALL
    assert sizes["cow/data/0020/shots/001/frame0001.jpg"] == BIG
    assert test.labels[test.image_ids.index("horse/data/0004/shots/055/frame0020.jpg")] == 7
    assert test.image_path(0).is_file() and not any(out.rglob("*.jpg"))  # referenced, not copied

    report = json.loads((out / "conversion.json").read_text())
    assert report["splits"] == {"train": {"videos": 12, "shots": 14, "frames": 23},
                                "val": {"videos": 9, "frames": 9, "boxes": 9},
                                "test": {"videos": 12, "frames": 13, "boxes": 14}}
    assert report["val_videos"]["aeroplane"] == aero_val and report["val_videos"]["car"] == []
    assert report["boxes"]["clipped"] == 1 and report["boxes"]["negative_set_to_zero"] == 1
    assert report["boxes"]["dropped_outside"]["count"] == 2
    assert [f.split(":")[0] for f in report["boxes"]["hand_fixes"]] == [
        "boat/data/0006/shots/026/frame0001.jpg", "horse/data/0004/shots/055/frame0020.jpg"]
    assert report["skipped_shots"] == {"count": 1, "first": ["aeroplane/data/0008/shots/002"]}
    assert report["frames_without_boxes"]["first"] == ["aeroplane/data/0009/shots/002/frame0001.jpg"]
    assert len(report["warnings"]) == 3
    assert not out.with_name("out.partial").exists()


def test_v1_val_choice_is_the_public_seeded_shuffle():
    videos = [f"{v:04d}" for v in range(1, 8)]
    state = random.getstate()
    assert v1_val_videos(videos, 0) == ["0006", "0004", "0007", "0003", "0001"]
    assert v1_val_videos(list(reversed(videos)), 0) == ["0006", "0004", "0007", "0003", "0001"]  # sorted first
    reference = sorted(videos)
    rng = random.Random(3)  # what random.seed(class index) + random.shuffle does
    for _ in range(1000):
        rng.shuffle(reference)
    assert v1_val_videos(videos, 3) == reference[:5] != v1_val_videos(videos, 0)
    assert sorted(v1_val_videos(["0002", "0001"], 4)) == ["0001", "0002"]  # fewer than 5: all
    assert v1_val_videos([], 1) == []
    assert random.getstate() == state  # the global RNG is left alone


# ------------------------------------------------------------------------------------------------ v2.2 fake tree


def _gt(path: Path, variable: str, name: str, boxes_of: dict) -> None:
    """A ``bb_gt*`` struct array: records (frame id ``<class><8 digits>``, n×4 boxes), as the real files."""
    records = np.zeros((1, len(boxes_of)), dtype=[("frame", "O"), ("boxes", "O")])
    for i, (frame, boxes) in enumerate(boxes_of.items()):
        records[0, i] = (f"{name}{frame:08d}", np.array(boxes, dtype=float).reshape(-1, np.shape(boxes)[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {variable: records})


def _ranges(path: Path, shots: list[tuple[int, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"ranges": np.array(shots, dtype=float).T})  # 3×N: start, end, video


def _fake_v2(raw: Path) -> Path:
    """All ten classes; odd frames are 40x30, even ones 48x36. Default class: videos 1..5 of 2 frames, one shot
    each; Training boxes on videos 1, 3, 4, 5 (first 3 -> val, video 5 -> train), a Test box on video 2.
    aeroplane: videos out of numeric order, a frame in two shots, missing frames, a video without boxes."""
    for name in YTO_CLASSES:
        if name == "aeroplane":
            shots = [(1, 3, 5), (3, 6, 5), (7, 8, 2), (9, 10, 9), (11, 12, 3), (13, 14, 7), (15, 16, 4), (20, 21, 3)]
            present = [f for f in range(1, 17) if f != 12]
            train_gt = {3: [[1, 2, 10, 12]], 7: [[1, 2, 11, 12]], 9: [[1, 2, 12, 12]], 11: [[1, 2, 13, 12]]}
            test_gt = {15: [[-2, 4, 48, 20], [5, 5, 10, 10]]}
        else:
            shots = [(2 * v - 1, 2 * v, v) for v in range(1, 6)]
            present = list(range(1, 11))
            train_gt = {1: [[2, 3, 20, 25]], 5: [[2, 3, 20, 25]], 7: [[2, 3, 20, 25]], 9: [[2, 3, 20, 25]]}
            test_gt = {3: [[1, 1, 30, 20]]}
        for frame in present:
            _jpeg(raw / name / f"{frame:08d}.jpg", SMALL if frame % 2 else BIG)
        _ranges(raw / "Ranges" / f"ranges_{name}.mat", shots)
        _gt(raw / "GroundTruth" / name / f"bb_gtTraining_{name}.mat", "bb_gtTraining", name, train_gt)
        _gt(raw / "GroundTruth" / name / f"bb_gtTest_{name}.mat", "bb_gtTest", name, test_gt)
    return raw


@pytest.fixture
def v2_raw(tmp_path):
    return _fake_v2(tmp_path / "raw").resolve()


@pytest.fixture(scope="module")
def v2_converted(tmp_path_factory) -> tuple[Path, Path]:
    """(raw, out) of one conversion, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("ytov2")
    raw = _fake_v2(root / "raw").resolve()
    (root / "out").mkdir()
    return raw, convert_ytov2(raw, root / "out")


def test_v2_splits(v2_converted):
    _, out = v2_converted
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["kind"] == "video" and info["shot_splits"] == ["train"] and info["image_root"] == "frames"
    ds = load_dataset(out)
    train, val, test = ds["train"], ds["val"], ds["test"]

    assert train.image_ids == (["aeroplane/video-0003/shot-000004"]  # shot 7 of video 3 has no frame: skipped
                               + [f"{c}/video-0005/shot-000004" for c in YTO_CLASSES[1:]])
    assert train.labels.tolist() == list(range(10)) and not train.has_boxes and (train.sizes == -1).all()

    # val: the first three train videos in Ranges order (aeroplane: 5, 2, 9; not 2, 3, 5)
    assert val.image_ids[:3] == ["aeroplane/video-0002/shot-000002/00000007.jpg",
                                 "aeroplane/video-0005/shot-000001/00000003.jpg",  # frame 3: the later shot
                                 "aeroplane/video-0009/shot-000003/00000009.jpg"]
    assert val.image_ids[3:6] == ["bird/video-0001/shot-000000/00000001.jpg",
                                  "bird/video-0003/shot-000002/00000005.jpg",
                                  "bird/video-0004/shot-000003/00000007.jpg"]
    assert len(val) == 30 and val.num_boxes == 30
    assert [b.tolist() for b in val.boxes[:3]] == [[[1, 2, 11, 12]], [[1, 2, 10, 12]], [[1, 2, 12, 12]]]
    assert (val.sizes == SMALL).all()

    assert test.image_ids[0] == "aeroplane/video-0004/shot-000006/00000015.jpg"
    assert test.boxes[0].tolist() == [[0, 4, 39, 20], [5, 5, 10, 10]]  # negative -> 0; x1 = 48 -> w-1
    assert test.image_ids[1] == "bird/video-0002/shot-000001/00000003.jpg" and test.labels[1] == 1
    assert len(test) == 10 and test.num_boxes == 11

    report = json.loads((out / "conversion.json").read_text())
    assert report["splits"] == {"train": {"videos": 10, "shots": 10, "frames": 19},
                                "val": {"videos": 30, "frames": 30, "boxes": 30},
                                "test": {"videos": 10, "frames": 10, "boxes": 11}}
    assert report["val_videos"]["aeroplane"] == ["video-0005", "video-0002", "video-0009"]
    assert report["dropped_videos_without_boxes"] == 1 and report["linked_frames"] == 104
    assert report["link_mode"] == "symlink"
    assert report["boxes"]["clipped"] == 1 and report["boxes"]["negative_set_to_zero"] == 1
    assert report["skipped_shots"]["first"] == ["aeroplane/video-0003/shot-000007"]
    assert report["missing_frames"]["first"] == ["aeroplane/00000012.jpg", "aeroplane/00000020.jpg",
                                                 "aeroplane/00000021.jpg"]
    assert report["frames_in_two_shots"]["first"] == ["aeroplane/00000003"]
    assert len(report["warnings"]) == 3


def test_v2_frames_are_symlinks_that_resolve(v2_converted):
    v2_raw, out = v2_converted
    ds = load_dataset(out)
    frames = out / "frames"
    shot = ds["train"].image_path(0)
    assert shot == frames / "aeroplane/video-0003/shot-000004"
    assert [p.name for p in shot.iterdir()] == ["00000011.jpg"]
    for split in (ds["val"], ds["test"]):
        for i in range(len(split)):
            path = split.image_path(i)
            assert path.is_symlink() and path.resolve().parent.parent == v2_raw
            with Image.open(path) as image:
                assert image.size == tuple(split.sizes[i])
    both = sorted(p.relative_to(frames).as_posix() for p in frames.glob("aeroplane/video-0005/*/*"))
    assert both == ["aeroplane/video-0005/shot-000000/00000001.jpg", "aeroplane/video-0005/shot-000000/00000002.jpg",
                    "aeroplane/video-0005/shot-000000/00000003.jpg", "aeroplane/video-0005/shot-000001/00000003.jpg",
                    "aeroplane/video-0005/shot-000001/00000004.jpg", "aeroplane/video-0005/shot-000001/00000005.jpg",
                    "aeroplane/video-0005/shot-000001/00000006.jpg"]
    assert not (frames / "aeroplane" / "video-0007").exists()  # no boxes: dropped
    assert sum(1 for p in frames.rglob("*.jpg")) == 104


@pytest.mark.parametrize("failing,mode", [(("symlink",), "hardlink"), (("symlink", "link"), "copy")])
def test_v2_link_fallback(v2_raw, tmp_path, monkeypatch, failing, mode):
    def refuse(*args, **kwargs):
        raise OSError("operation not permitted")

    for name in failing:
        monkeypatch.setattr(os, name, refuse)
    out = convert_ytov2(v2_raw, tmp_path / "out")
    assert json.loads((out / "conversion.json").read_text())["link_mode"] == mode
    frame = out / "frames" / "aeroplane/video-0004/shot-000006/00000015.jpg"
    assert not frame.is_symlink() and frame.is_file()
    assert (frame.stat().st_ino == (v2_raw / "aeroplane/00000015.jpg").stat().st_ino) == (mode == "hardlink")


# ------------------------------------------------------------------------------------------------ output folder


@pytest.mark.parametrize("convert,fake", [(convert_ytov1, _fake_v1), (convert_ytov2, _fake_v2)])
def test_existing_output_needs_force(tmp_path, convert, fake):
    raw = fake(tmp_path / "raw")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(DataError, match="not empty") as err:
        convert(raw, out)
    assert str(out) in str(err.value)
    assert (out / "old.txt").exists()
    convert(raw, out, force=True)
    assert not (out / "old.txt").exists() and (out / "dataset.yaml").is_file()
    with pytest.raises(DataError, match="must not contain the raw"):
        convert(raw, tmp_path, force=True)
    assert raw.is_dir()


# ------------------------------------------------------------------------------------------------ bad inputs


def _rm(rel: str):
    def mutate(raw: Path) -> None:
        path = raw / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return mutate


def _write_bytes(rel: str, data: bytes = b"not a mat file at all"):
    return lambda raw: (raw / rel).write_bytes(data)


def _savemat(rel: str, variables: dict):
    return lambda raw: scipy.io.savemat(str(raw / rel), variables)


_COW_STICKS = "cow/data/0020/shots/001/frame0001.jpg_sticks.mat"
_BAD_V1 = {
    "missing class": (_rm("cow"), "cow", "missing class folder"),
    "missing sets file": (_rm("cat/sets/test.txt"), "cat/sets/test.txt", "missing video list"),
    "bad sets line": (lambda raw: (raw / "cat/sets/train.txt").write_text("0001\n../x\n"), "cat/sets/train.txt:2",
                      "video id of digits"),
    "video in both lists": (lambda raw: (raw / "cat/sets/test.txt").write_text("0020\n0001\n"), "cat/sets",
                            "listed in both"),
    "missing video folder": (_rm("car/data/0001"), "car/data/0001", "folder of video 0001"),
    "missing shots folder": (_rm("car/data/0001/shots"), "car/data/0001/shots", "missing shots folder"),
    "mat without coor": (_savemat(_COW_STICKS, {"boxes": np.zeros((1, 4))}), _COW_STICKS, "no variable 'coor'"),
    "box of 3 numbers": (lambda raw: _sticks(raw / _COW_STICKS[: -len("_sticks.mat")], [[1, 2, 3]]), _COW_STICKS,
                         "has 3 numbers"),
    "numeric Nx3": (_savemat(_COW_STICKS, {"coor": np.ones((2, 3))}), _COW_STICKS, "shape (2, 3)"),
    "unreadable mat": (_write_bytes(_COW_STICKS), _COW_STICKS, "cannot read .mat file"),
    "inverted box": (lambda raw: _sticks(raw / _COW_STICKS[: -len("_sticks.mat")], [[30, 2, 5, 20]]), _COW_STICKS,
                     "inverted"),
    "annotated frame missing": (_rm("cow/data/0020/shots/001/frame0001.jpg"), "cow/data/0020/shots/001/frame0001.jpg",
                                "annotated frame file is missing"),
    "annotated frame unreadable": (_write_bytes("cow/data/0020/shots/001/frame0001.jpg", b"\xff\xd8junk"),
                                   "cow/data/0020/shots/001/frame0001.jpg", "cannot read image"),
}

_DOG_TRAINING = "GroundTruth/dog/bb_gtTraining_dog.mat"
_BAD_V2 = {
    "missing class": (_rm("cow"), "cow", "missing class folder"),
    "missing Ranges": (_rm("Ranges/ranges_cat.mat"), "Ranges/ranges_cat.mat", "missing .mat file"),
    "Ranges of 2 rows": (_savemat("Ranges/ranges_cat.mat", {"ranges": np.ones((2, 5))}), "Ranges/ranges_cat.mat",
                         "shape (2, 5)"),
    "Ranges without its variable": (_savemat("Ranges/ranges_cat.mat", {"shots": np.ones((3, 5))}),
                                    "Ranges/ranges_cat.mat", "no variable 'ranges'"),
    "missing GroundTruth": (_rm("GroundTruth/dog/bb_gtTest_dog.mat"), "GroundTruth/dog/bb_gtTest_dog.mat",
                            "missing .mat file"),
    "GroundTruth without its variable": (_savemat(_DOG_TRAINING, {"bb_gtTest": np.ones((1, 4))}), _DOG_TRAINING,
                                         "no variable 'bb_gtTraining'"),
    "boxes Nx3": (lambda raw: _gt(raw / _DOG_TRAINING, "bb_gtTraining", "dog", {1: [[1, 2, 3]]}), _DOG_TRAINING,
                  "expected N×4"),
    "not a struct array": (_savemat(_DOG_TRAINING, {"bb_gtTraining": np.ones((3, 4))}), _DOG_TRAINING,
                           "not a struct array"),
    "frame id of another class": (lambda raw: _gt(raw / _DOG_TRAINING, "bb_gtTraining", "cat", {1: [[1, 1, 5, 5]]}),
                                  _DOG_TRAINING, "frame id 'cat00000001'"),
    "frame in no shot": (lambda raw: _gt(raw / _DOG_TRAINING, "bb_gtTraining", "dog", {99: [[1, 1, 5, 5]]}),
                         _DOG_TRAINING, "frame 99 lies in no shot"),
    "video with Training and Test boxes": (
        lambda raw: _gt(raw / _DOG_TRAINING, "bb_gtTraining", "dog", {4: [[1, 1, 5, 5]]}),
        "GroundTruth/dog/bb_gtTest_dog.mat", "both Training and Test"),
    "annotated frame missing": (_rm("dog/00000003.jpg"), "dog/00000003.jpg", "annotated frame file is missing"),
}


@pytest.mark.parametrize("case", list(_BAD_V1))
def test_v1_bad_input(tmp_path, case):
    mutate, rel, needle = _BAD_V1[case]
    raw = _fake_v1(tmp_path / "raw").resolve()
    mutate(raw)
    with pytest.raises(DataError) as err:
        convert_ytov1(raw, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and needle in message and f"{raw / rel}" in message, message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("case", list(_BAD_V2))
def test_v2_bad_input(tmp_path, case):
    mutate, rel, needle = _BAD_V2[case]
    raw = _fake_v2(tmp_path / "raw").resolve()
    mutate(raw)
    with pytest.raises(DataError) as err:
        convert_ytov2(raw, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and needle in message and f"{raw / rel}" in message, message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
