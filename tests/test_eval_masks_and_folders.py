"""PxAP (hand values, real OpenImages masks) and `tedloc evaluate-maps` on real datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tedloc.cli import main
from tedloc.data import Split, WSOLDataset, import_wsol, load_dataset, save_dataset
from tedloc.eval import WSOLEvaluator, evaluate_map_folder, threshold_list
from tedloc.eval.mask_metrics import MaskAccumulator
from tedloc.eval.scoremaps import ScoreMapError


def test_histogram_bins_equal_numpy():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.random(5000), threshold_list(0.01), [0.0, 1.0, 0.29, np.float32(0.29)]])
    acc = MaskAccumulator(threshold_list(0.01))
    ref, _ = np.histogram(scores, bins=np.append(threshold_list(0.01), [1.0, 2.0, 3.0]))
    assert np.array_equal(acc._histogram(scores), ref)


def _pxap(scores, mask, interval=0.1):
    acc = MaskAccumulator(threshold_list(interval))
    acc.add(np.asarray(scores, float).reshape(1, -1), np.asarray(mask, np.uint8).reshape(1, -1))
    return acc.compute()["PxAP"]


def test_pxap_hand_values():
    # ranking: 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-): AP = 1 * 1/2 + 2/3 * 1/2
    assert abs(_pxap([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) - 100 * (0.5 + 2 / 3 * 0.5)) < 1e-9
    assert _pxap([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == 100.0  # perfect
    assert abs(_pxap([0.4] * 5, [1, 0, 0, 1, 0]) - 100 * 2 / 5) < 1e-9  # constant: the positive rate
    # ignore pixels (255) are dropped, whatever their score
    assert _pxap([1.0, 0.0, 1.0, 0.9], [1, 0, 255, 255]) == 100.0


def _openimages_with_masks(wsol_metadata, tmp_path):
    masks = wsol_metadata.parent / "test_data" / "test_masks"
    out, _ = import_wsol(wsol_metadata, "OpenImages", tmp_path / "oi_full", masks=masks)
    val = load_dataset(out, splits=["val"])["val"]
    keep = [i for i in range(len(val)) if (val.mask_root / val.mask_paths[i][0]).exists()]
    assert len(keep) == 5
    ds = WSOLDataset("OpenImages", load_dataset(out, splits=["val"]).class_names, {"val": val.subset(keep)})
    return save_dataset(ds, tmp_path / "oi", image_root=None, mask_root=str(masks))


def _independent_mask(path_list, ignore, size=224):
    """Union of instance masks and ignore, read with PIL; OpenCV's nearest rule floor(i * (1 / (size / n)))."""
    def read(p):
        a = np.asarray(Image.open(p).convert("RGB").convert("L"), dtype=np.float32)
        ys = np.minimum(np.floor(np.arange(size) * (1.0 / (size / a.shape[0]))).astype(int), a.shape[0] - 1)
        xs = np.minimum(np.floor(np.arange(size) * (1.0 / (size / a.shape[1]))).astype(int), a.shape[1] - 1)
        return a[ys][:, xs] > 0.5
    fg = np.any([read(p) for p in path_list], axis=0)
    ig = read(ignore) & ~fg
    return fg, ig


def test_pxap_on_real_openimages_masks(wsol_metadata, tmp_path, capsys):
    root = _openimages_with_masks(wsol_metadata, tmp_path)
    split = load_dataset(root)["val"]
    maps_perfect, maps_const = tmp_path / "perfect", tmp_path / "const"
    positives = negatives = 0
    for i, image_id in enumerate(split.image_ids):
        mask_files, ignore = split.mask_files(i)
        fg, ig = _independent_mask(mask_files, ignore)
        positives += int(fg.sum())
        negatives += int((~fg & ~ig).sum())
        for folder, m in ((maps_perfect, fg.astype(np.float64)), (maps_const, np.full((224, 224), 0.5))):
            (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{image_id}.npy", m)
    assert evaluate_map_folder(split, maps_perfect)["PxAP"] == 100.0
    const = evaluate_map_folder(split, maps_const)["PxAP"]
    assert abs(const - 100.0 * positives / (positives + negatives)) < 1e-9
    assert main(["evaluate-maps", "--data", str(root), "--split", "val", "--maps", str(maps_perfect),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["PxAP"] == 100.0
    assert "PxAP" in capsys.readouterr().out


def test_evaluate_maps_on_converted_tiny_imagenet(tiny_imagenet_src, tmp_path):
    from tedloc.data import convert_tinyimagenet

    root = convert_tinyimagenet(tiny_imagenet_src, tmp_path / "tin")
    test = load_dataset(root, splits=["test"])["test"]
    maps = tmp_path / "maps"
    centered = np.zeros((64, 64))
    centered[8:56, 8:56] = 1.0  # the centered 48x48 box
    for image_id in test.image_ids:
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", centered)
    assert main(["evaluate-maps", "--data", str(root), "--maps", str(maps), "--json", str(tmp_path / "r.json"),
                 "--workers", "2"]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    # independent check: the box is (8, 8, 56, 56) at every threshold (exclusive end of the contour box)
    box = np.array([8, 8, 56, 56])
    best = []
    for gts in test.boxes:
        ix = np.clip(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]) + 1, 0, None)
        iy = np.clip(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]) + 1, 0, None)
        inter = ix * iy
        union = 49 * 49 + (gts[:, 2] - gts[:, 0] + 1) * (gts[:, 3] - gts[:, 1] + 1) - inter
        best.append((inter / union).max())
    best = np.array(best)
    assert r["MaxBoxAcc"] == (best >= 0.5).sum() * 100.0 / len(best)
    assert r["MaxBoxAcc@70"] == (best >= 0.7).sum() * 100.0 / len(best)
    assert abs(r["mIoU"] - best.mean() * 100) < 1e-9
    assert 50 < r["MaxBoxAcc"] < 65  # the documented trivial baseline, about 0.58


def test_map_folder_bad_input(tmp_path):
    split = Split("test", ["a/1.png", "b/2.png"], [0, 1], [(8, 8)] * 2, [[[1, 1, 5, 5]]] * 2)
    maps = tmp_path / "maps"
    (maps / "a").mkdir(parents=True)
    np.save(maps / "a/1.png.npy", np.zeros((8, 8)))
    with pytest.raises(ScoreMapError, match="missing score map for 'b/2.png'"):
        evaluate_map_folder(split, maps)
    (maps / "b").mkdir()
    np.save(maps / "b/2.png.npy", np.full((8, 8), np.nan))
    with pytest.raises(ScoreMapError, match="NaN"):
        evaluate_map_folder(split, maps)
    np.save(maps / "b/2.png.npy", np.zeros((8, 8)))
    np.save(maps / "a/1.png.scores.npy", np.zeros(3))
    with pytest.raises(ScoreMapError, match="class scores exist for 1 of 2"):
        evaluate_map_folder(split, maps)
    (maps / "a/1.png.scores.npy").unlink()
    np.save(maps / "c.png.npy", np.zeros((8, 8)))
    with pytest.raises(ScoreMapError, match="not in split"):
        evaluate_map_folder(split, maps)
    (maps / "c.png.npy").unlink()
    assert evaluate_map_folder(split, maps)["images"] == 2


def test_evaluator_needs_ground_truth():
    split = Split("train", ["a"], [0], [(8, 8)], [[]])
    with pytest.raises(Exception, match="neither boxes nor masks"):
        WSOLEvaluator(split)


def test_read_npy_equals_np_load(tmp_path):
    from tedloc.utils.io import NpyBuffer, read_npy

    arrays = [np.random.default_rng(0).random((9, 7)).astype(np.float32), np.arange(12.0).reshape(3, 4),
              np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.arange(5, dtype=">i2"), np.zeros((0, 3)), np.float64(2.5)]
    buffer = NpyBuffer()
    for i, a in enumerate(arrays * 2):  # the second round reads cached headers
        path = tmp_path / f"{i % len(arrays)}.npy"
        np.save(path, a)
        b = read_npy(path)
        assert b.dtype == a.dtype and b.shape == np.shape(a) and np.array_equal(b, a) and b.flags.writeable
        c = read_npy(path, buffer)  # into a reused buffer (tests/test_robust_maps.py: never over a live array)
        assert c.dtype == a.dtype and c.shape == np.shape(a) and np.array_equal(c, a)
    path = tmp_path / "cut.npy"
    path.write_bytes((tmp_path / "0.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="data bytes"):
        read_npy(path)
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        read_npy(tmp_path / "obj.npy")
