"""Paired transforms: images, boxes, masks and maps stay aligned under resize, crop and flip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tedloc.data.transforms import EvalTransform, TrainTransform, View, to_normalized_tensor


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_eval_view_is_plain_resize():
    v = EvalTransform(224).view((500, 375))
    assert v == View((500, 375), (224, 224), (0, 0, 224, 224), False)
    assert v.boxes(np.array([[0, 0, 499, 374]])).tolist() == [[0, 0, 223, 223]]


def test_train_view_defaults_follow_wsolevaluation():
    rng = np.random.default_rng(0)
    v = TrainTransform(224).view((500, 375), rng)
    assert v.resized == (256, 256) and v.crop[2:] == (224, 224)
    assert 0 <= v.crop[0] <= 32 and 0 <= v.crop[1] <= 32
    assert TrainTransform(64).view((64, 64), rng).resized == (73, 73)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_masks_and_image_stay_aligned(seed):
    rng = np.random.default_rng(seed)
    w, h = 120, 90
    mask = np.zeros((h, w), np.uint8)
    box = (30, 20, 69, 59)  # inclusive
    mask[box[1]:box[3] + 1, box[0]:box[2] + 1] = 1
    view = TrainTransform(64, 80).view((w, h), rng)
    mapped_mask = view.map(torch.from_numpy(mask), mode="nearest").numpy() > 0
    image = Image.fromarray(mask * 255)
    mapped_image = np.asarray(view.image(image)) > 127
    mapped_box = view.boxes(np.array([box]))[0]
    mb = _mask_box(mapped_mask)
    ib = _mask_box(mapped_image)
    # the box follows the pixels to within one pixel of resampling
    assert np.abs(np.array(mb) - mapped_box).max() <= 1.0
    assert np.abs(np.array(ib) - mapped_box).max() <= 1.5
    assert mapped_mask.shape == (64, 64) and mapped_image.shape == (64, 64)


def test_flip_mirrors_boxes_and_maps():
    v = View((10, 10), (10, 10), (0, 0, 10, 10), True)
    assert v.boxes(np.array([[0, 2, 3, 5]])).tolist() == [[6, 2, 9, 5]]
    m = torch.zeros(10, 10)
    m[2:6, 0:4] = 1
    out = v.map(m, mode="nearest")
    assert out[2:6, 6:10].sum() == 16 and out.sum() == 16


def test_map_at_low_resolution_covers_whole_image():
    v = View((64, 64), (72, 72), (4, 4, 64, 64), False)
    cam = torch.rand(2, 8, 8)
    out = v.map(cam)
    assert out.shape == (2, 64, 64)


def test_view_tensor_round_trip_and_boxes_outside_crop_dropped():
    v = View((100, 80), (73, 73), (5, 7, 64, 64), True)
    assert View.from_tensor(v.to_tensor()) == v
    assert len(v.boxes(np.array([[0, 0, 3, 3]]))) == 0


def test_normalized_tensor():
    im = Image.fromarray(np.full((2, 3, 3), 255, np.uint8))
    t = to_normalized_tensor(im)
    assert t.shape == (3, 2, 3)
    assert torch.allclose(t[0], torch.full((2, 3), (1 - 0.485) / 0.229))
