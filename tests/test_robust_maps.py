"""`evaluate-maps` on awkward but valid map folders, and clear errors on broken ones (no tracebacks,
no silently wrong numbers)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tedloc.cli import main
from tedloc.data import SyntheticConfig, check_dataset, load_dataset, make_synthetic
from tedloc.eval import WSOLEvaluator, evaluate_map_folder
from tedloc.eval.scoremaps import ScoreMapError
from tedloc.utils.io import NpyBuffer, read_npy

CLASSES = 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic dataset (boxes and masks) with 40 test images: enough for two chunks with --workers 2."""
    out = tmp_path_factory.mktemp("robust") / "data"
    return make_synthetic(out, SyntheticConfig(classes=CLASSES, train=10, val=0, test=40, size=40, seed=5))


def _test_split(root):
    return load_dataset(root, splits=["test"])["test"]


def _write_map(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def _awkward_maps(split, folder, scores=True, seed=0):
    """Maps at the image's size, 64x64 and 96x96 in turn; float16/32/64; C and Fortran order."""
    rng = np.random.default_rng(seed)
    dtypes = (np.float64, np.float32, np.float16, ">f8", np.float32)  # and a big-endian one
    for k, image_id in enumerate(split.image_ids):
        w, h = (int(v) for v in split.sizes[k])
        shape = [(h, w), (64, 64), (96, 96)][k % 3]
        m = rng.random(shape).astype(dtypes[k % len(dtypes)])
        if k % 4 == 1:
            m = np.asfortranarray(m)
        _write_map(folder / f"{image_id}.npy", m)
        if scores:
            np.save(folder / f"{image_id}.scores.npy", rng.random(CLASSES).astype([np.float32, np.float64][k % 2]))


def _np_load_loop(split, folder, scores=True):
    evaluator = WSOLEvaluator(split)
    for image_id in split.image_ids:
        s = np.load(folder / f"{image_id}.scores.npy") if scores else None
        evaluator.accumulate(image_id, np.load(folder / f"{image_id}.npy"), s)
    return evaluator.compute()


@pytest.mark.parametrize("workers", [1, 2])
def test_maps_of_mixed_sizes_dtypes_and_orders(data, tmp_path, workers):
    split = _test_split(data)
    _awkward_maps(split, tmp_path / "maps")
    expected = _np_load_loop(split, tmp_path / "maps")
    assert {"MaxBoxAcc", "PxAP", "CL@1", "Top1Loc"} <= set(expected)
    assert evaluate_map_folder(split, tmp_path / "maps", workers=workers) == expected


def test_maps_of_mixed_sizes_on_the_command_line(data, tmp_path, capsys):
    split = _test_split(data)
    _awkward_maps(split, tmp_path / "maps", seed=1)
    expected = _np_load_loop(split, tmp_path / "maps")
    for workers in ("1", "2"):
        assert main(["evaluate-maps", "--data", str(data), "--maps", str(tmp_path / "maps"), "--workers", workers,
                     "--json", str(tmp_path / "r.json")]) == 0  # the default protocol, the evaluator's
        assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(expected))


def test_float16_and_fortran_maps_are_scored_as_float64_c_maps(data):
    split = _test_split(data)
    rng = np.random.default_rng(2)
    maps = {i: rng.random((33, 47)).astype(np.float16) for i in split.image_ids}
    plain, odd = WSOLEvaluator(split), WSOLEvaluator(split)
    for k, (image_id, m) in enumerate(maps.items()):
        plain.accumulate(image_id, m.astype(np.float64))
        variant = [m, np.asfortranarray(m), np.asfortranarray(m.astype(np.float32)),
                   np.pad(m.astype(np.float64), 1)[1:-1, 1:-1]][k % 4]  # the last is not contiguous
        odd.accumulate(image_id, variant)
    assert odd.compute() == plain.compute()


def test_npy_buffer_never_changes_an_array_in_use(tmp_path):
    small, large = np.arange(6.0).reshape(2, 3), np.arange(20.0).reshape(4, 5)
    np.save(tmp_path / "small.npy", small)
    np.save(tmp_path / "large.npy", large)
    buffer = NpyBuffer()
    a = read_npy(tmp_path / "small.npy", buffer)
    b = read_npy(tmp_path / "large.npy", buffer)  # grows while `a` is alive: BufferError before
    c = read_npy(tmp_path / "large.npy", buffer)  # same size while `b` is alive: must not overwrite it
    c[:] = -1
    assert np.array_equal(a, small) and np.array_equal(b, large) and a.flags.writeable
    address = c.__array_interface__["data"][0]
    del a, b, c
    d = read_npy(tmp_path / "small.npy", buffer)  # nothing alive: the buffer is reused, no allocation
    assert d.__array_interface__["data"][0] == address and np.array_equal(d, small)
    view = d.T  # a view keeps the bytes in use too
    del d
    e = read_npy(tmp_path / "large.npy", buffer)
    assert np.array_equal(view, small.T) and np.array_equal(e, large)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"image_id,score\na,0.5\n", r"not a \.npy file \(no NumPy header\)"),
    (b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", "truncated"),
    (b"\x93NUMPY", "truncated"),
])
def test_unreadable_npy_files_are_named_in_one_line(content, message, tmp_path):
    (tmp_path / "x.npy").write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_npy(tmp_path / "x.npy")
    assert str(tmp_path / "x.npy") in str(info.value) and "\n" not in str(info.value)


def test_object_and_cut_npy_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        read_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "m.npy", np.zeros((4, 4)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "m.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated: 120 data bytes, its header says 128"):
        read_npy(tmp_path / "cut.npy")


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"0.1 0.2\n0.3 0.4\n", r"not a \.npy file \(no NumPy header\)"),
])
def test_evaluate_maps_names_the_unreadable_file(data, tmp_path, capsys, content, message):
    split = _test_split(data)
    _awkward_maps(split, tmp_path / "maps", scores=False)
    bad = tmp_path / "maps" / f"{split.image_ids[3]}.npy"
    bad.write_bytes(content)
    with pytest.raises(ScoreMapError, match=message):
        evaluate_map_folder(split, tmp_path / "maps")
    assert main(["evaluate-maps", "--data", str(data), "--maps", str(tmp_path / "maps"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err
    assert "Traceback" not in err and "pickled" not in err


@pytest.mark.parametrize("shape, message", [
    ((7,), "7 entries, expected 10"),
    ((5,), "5 entries, expected 10"),
    ((1, 10), r"must be 1-D \(K,\), got shape \(1, 10\)"),
])
def test_class_scores_of_the_wrong_shape_are_refused(data, tmp_path, capsys, shape, message):
    split = _test_split(data)
    _awkward_maps(split, tmp_path / "maps")
    bad = tmp_path / "maps" / f"{split.image_ids[5]}.scores.npy"
    np.save(bad, np.random.default_rng(0).random(shape))
    for workers in (1, 2):
        with pytest.raises(ScoreMapError, match=message):
            evaluate_map_folder(split, tmp_path / "maps", workers=workers, num_classes=CLASSES)
    assert main(["evaluate-maps", "--data", str(data), "--maps", str(tmp_path / "maps"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and message.split(",")[0].replace("\\", "") in err


def test_evaluator_checks_class_scores(data):
    split = _test_split(data)
    m = np.zeros((8, 8))
    with pytest.raises(ScoreMapError, match=f"class scores for '{split.image_ids[0]}': 7 entries, expected 10"):
        WSOLEvaluator(split, num_classes=CLASSES).accumulate(split.image_ids[0], m, np.zeros(7))
    evaluator = WSOLEvaluator(split)  # without num_classes: every image must give as many scores as the first
    evaluator.accumulate(split.image_ids[0], m, np.zeros(CLASSES))
    with pytest.raises(ScoreMapError, match="5 entries, expected 10"):
        evaluator.accumulate(split.image_ids[1], m, np.zeros(5))
    with pytest.raises(ScoreMapError, match="must be 1-D"):
        evaluator.accumulate(split.image_ids[1], m, np.zeros((2, 5)))
    k = int(np.argmax(split.labels))  # the first image of the largest class index
    label = int(split.labels[k])
    with pytest.raises(ScoreMapError, match=f"{label} entries, but its class is {label}"):
        WSOLEvaluator(split).accumulate(split.image_ids[k], m, np.zeros(label))


@pytest.fixture()
def no_boxes(data, tmp_path):
    """The dataset with its test split's localization.txt removed: masks only (masks.txt)."""
    root = tmp_path / "ds"
    shutil.copytree(data, root)
    (root / "metadata" / "test" / "localization.txt").unlink()
    return root


def test_check_warns_about_a_split_without_boxes(no_boxes, capsys):
    report = check_dataset(no_boxes, images=False)
    assert report.ok
    assert any("split test" in w and "no GT boxes" in w and "MaxBoxAcc" in w for w in report.warnings)
    assert main(["data", "check", str(no_boxes)]) == 0
    assert "MaxBoxAcc" in capsys.readouterr().out


def test_evaluation_without_boxes_says_what_is_missing(no_boxes, tmp_path, capsys):
    split = _test_split(no_boxes)
    _awkward_maps(split, tmp_path / "maps")
    metrics = evaluate_map_folder(split, tmp_path / "maps", num_classes=CLASSES)
    assert {"PxAP", "CL@1", "CL@5"} <= set(metrics) and "MaxBoxAcc" not in metrics
    assert metrics["CL@1"] == _np_load_loop(_test_split(no_boxes), tmp_path / "maps")["CL@1"]
    assert main(["evaluate-maps", "--data", str(no_boxes), "--maps", str(tmp_path / "maps"), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "CL@1" in out and "PxAP" in out
    assert "MaxBoxAcc" in err and "not computed" in err and "split 'test' has no GT boxes" in err


def test_classification_accuracy_is_the_same_with_or_without_boxes(data):
    split = _test_split(data)
    rng = np.random.default_rng(3)
    both, masks_only = WSOLEvaluator(split), WSOLEvaluator(split, boxes=False)
    for image_id in split.image_ids:
        m, s = rng.random((40, 40)), rng.random(CLASSES)
        both.accumulate(image_id, m, s)
        masks_only.accumulate(image_id, m, s)
    a, b = both.compute(), masks_only.compute()
    assert (a["CL@1"], a["CL@5"], a["PxAP"]) == (b["CL@1"], b["CL@5"], b["PxAP"])
