"""The built-in synthetic benchmark: deterministic, exact boxes and masks, the WSOL part-vs-whole setup."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
from tedloc.data.synthetic import render_sample, synthetic_class_names
from tedloc.errors import DataError


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    cfg = SyntheticConfig(classes=3, train=6, val=3, test=3, size=40, seed=7)
    a = make_synthetic(tmp_path / "a", cfg)
    b = make_synthetic(tmp_path / "b", cfg)
    assert _digest(a) == _digest(b)
    c = make_synthetic(tmp_path / "c", SyntheticConfig(classes=3, train=6, val=3, test=3, size=40, seed=8))
    assert _digest(a) != _digest(c)


def test_layout_counts_and_exact_boxes(synthetic_small):
    ds = load_dataset(synthetic_small)
    assert ds.class_names == synthetic_class_names(4) == ["red circle", "green square", "blue triangle",
                                                           "yellow diamond"]
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 24, "val": 8, "test": 8}
    for split in ds.splits.values():
        assert np.bincount(split.labels, minlength=4).tolist() == [len(split) // 4] * 4
        for i in range(len(split)):
            masks, ignore = split.mask_files(i)
            mask = np.asarray(Image.open(masks[0])) > 0
            ys, xs = np.nonzero(mask)
            assert split.boxes[i].tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]
            assert not np.asarray(Image.open(ignore)).any()
            assert Image.open(split.image_path(i)).size == (48, 48)


def test_class_evidence_is_a_part_of_the_object():
    cfg = SyntheticConfig(size=64)
    fractions = []
    for i in range(40):
        img, mask = render_sample(cfg, label=0, split="train", index=i)  # red emblem
        red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
        emblem = red & mask
        fractions.append(emblem.sum() / mask.sum())
    # the emblem is a small part of the object: a CAM on it gives a box far smaller than GT
    assert 0.03 < np.median(fractions) < 0.35


def test_reuse_and_refuse(tmp_path):
    cfg = SyntheticConfig(classes=2, train=2, val=2, test=2, size=32)
    out = make_synthetic(tmp_path / "d", cfg)
    stamp = (out / "dataset.yaml").stat().st_mtime_ns
    assert make_synthetic(out, cfg) == out and (out / "dataset.yaml").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="different configuration"):
        make_synthetic(out, SyntheticConfig(classes=3, train=2, val=2, test=2, size=32))
    with pytest.raises(DataError, match="--classes"):
        make_synthetic(tmp_path / "e", SyntheticConfig(classes=1))
