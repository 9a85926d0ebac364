"""Side-by-side with the reference wsolevaluation code, when a checkout is given.

Set ``TEDLOC_WSOLEVAL_REF=/path/to/clovaai/wsolevaluation`` to run (the reference is not part of
tedloc and is never copied into it). Everything else in the suite checks hand-computed values.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tedloc.data import Split
from tedloc.data.wsol_format import write_split_metadata
from tedloc.eval import WSOLEvaluator, normalize_scoremap

REF = os.environ.get("TEDLOC_WSOLEVAL_REF")
pytestmark = pytest.mark.skipif(not REF, reason="set TEDLOC_WSOLEVAL_REF to a wsolevaluation checkout")


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from bench_eval import load_reference

    return load_reference(Path(REF))


@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_box_metrics_equal_the_reference(ref, tmp_path, interval):
    rng = np.random.default_rng(1)
    n = 60
    sizes = rng.integers(100, 500, (n, 2))
    boxes = []
    for w, h in sizes:
        k = int(rng.integers(1, 4))
        x0, y0 = rng.integers(0, w - 1, k), rng.integers(0, h - 1, k)
        boxes.append(np.stack([x0, y0, rng.integers(x0, w), rng.integers(y0, h)], 1))
    split = Split("test", [f"d/{i}.jpg" for i in range(n)], [0] * n, sizes, boxes)
    write_split_metadata(split, tmp_path)
    maps = [normalize_scoremap(np.maximum(rng.normal(size=(14, 14)), 0) if i % 3 else rng.random((7, 9)), (224, 224))
            for i in range(n)]
    maps[0] = np.zeros((224, 224))  # no contour at all
    ours = WSOLEvaluator(split, interval=interval)
    for image_id, m in zip(split.image_ids, maps):
        ours.accumulate(image_id, m)
    r = ours.compute()
    for multi in (False, True):
        theirs = ref.BoxEvaluator(metadata=ref.configure_metadata(str(tmp_path)), dataset_name="ILSVRC",
                                  split="test", cam_threshold_list=list(np.arange(0, 1, interval)),
                                  iou_threshold_list=[30, 50, 70], mask_root="", multi_contour_eval=multi)
        for image_id, m in zip(split.image_ids, maps):
            theirs.accumulate(m, image_id)
        got = theirs.compute()
        if multi:
            assert [r["MaxBoxAcc@30"], r["MaxBoxAcc@50"], r["MaxBoxAcc@70"]] == got
            assert r["MaxBoxAccV2"] == np.average(got)
            assert np.array_equal(np.array(r["curves"]["BoxAcc@50"]), theirs.num_correct[50] * 100.0 / n)
        else:
            assert r["MaxBoxAcc"] == got[1]
            assert np.array_equal(np.array(r["curves"]["BoxAccV1@30"]), theirs.num_correct[30] * 100.0 / n)


def test_pxap_equals_the_reference(ref, wsol_metadata, tmp_path):
    from test_eval_masks_and_folders import _openimages_with_masks

    from tedloc.data import load_dataset

    root = _openimages_with_masks(wsol_metadata, tmp_path)
    split = load_dataset(root)["val"]
    write_split_metadata(split, tmp_path / "meta")
    rng = np.random.default_rng(0)
    maps = [normalize_scoremap(rng.random((7, 7)), (224, 224)) for _ in split.image_ids]
    ours = WSOLEvaluator(split, interval=0.001)
    theirs = ref.MaskEvaluator(metadata=ref.configure_metadata(str(tmp_path / "meta")), dataset_name="OpenImages",
                               split="val", cam_threshold_list=list(np.arange(0, 1, 0.001)),
                               iou_threshold_list=[30, 50, 70], mask_root=str(split.mask_root), multi_contour_eval=False)
    for image_id, m in zip(split.image_ids, maps):
        ours.accumulate(image_id, m)
        theirs.accumulate(m, image_id)
    assert ours.compute()["PxAP"] == theirs.compute()
