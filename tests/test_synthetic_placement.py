"""The synthetic benchmark's objects follow the sizes and positions of real WSOL test boxes (``placement``)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tedloc.cli import main
from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
from tedloc.data.box_statistics import QUANTILES, box_geometry, box_statistics
from tedloc.data.dataset import Split
from tedloc.data.synthetic import PLACEMENT_LEVELS, PLACEMENTS, render_sample
from tedloc.errors import DataError

METADATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsolevaluation" / "metadata"


def test_box_geometry_of_known_boxes():
    split = Split("test", ["a", "b"], [0, 0], [(100, 50), (10, 10)],
                  [[[0, 0, 49, 24], [0, 0, 9, 9]], [[5, 5, 9, 9]]])
    g = box_geometry(split)
    assert np.allclose(g["area"], [0.25, 0.25]) and np.allclose(g["dx"], [-0.25, 0.25])
    assert np.allclose(g["dy"], [-0.25, 0.25]) and np.allclose(g["offset"], [np.hypot(0.25, 0.25)] * 2)
    stats = box_statistics(split)
    assert stats["boxes_per_image"] == 1.5 and stats["area"]["quantiles"]["0.5"] == 0.25
    with pytest.raises(DataError, match="has no GT boxes"):
        box_geometry(Split("test", ["a"], [0], [(4, 4)], [[]]))


def test_uniform_placement_is_the_original_generator():
    cfg, h = SyntheticConfig(placement="uniform"), hashlib.sha256()
    for split in ("train", "test"):
        for i in range(5):
            image, mask = render_sample(cfg, i % 10, split, i)
            h.update(image.tobytes())
            h.update(mask.tobytes())
    assert h.hexdigest() == "c0fbaa11fe2c9e34223a4c33b574c17d8bcb5dce71c67ab283f3a1546a0371b8"


@pytest.mark.parametrize("placement", ["cub", "ilsvrc"])
def test_objects_follow_the_measured_boxes(placement, tmp_path):
    data = make_synthetic(tmp_path / "d", SyntheticConfig(train=0, val=0, test=400, placement=placement))
    g = box_geometry(load_dataset(data)["test"])
    target = PLACEMENTS[placement]
    for q in (0.25, 0.5, 0.75):  # the area fraction's quartiles within 0.04 of the real ones (an object spans
        level = PLACEMENT_LEVELS.index(q)  # at most the image less 3 pixels: ILSVRC's largest come out smaller)
        assert abs(np.quantile(g["area"], q) - target["area"][level]) < 0.04, (placement, q)
    assert abs(np.median(g["dx"]) - target["dx"][10]) < 0.03 and abs(np.median(g["dy"]) - target["dy"][10]) < 0.03
    spread = {k: (target[k][-2] - target[k][1]) / 2 for k in ("dx", "dy")}  # half the 5-95 % range
    for k in ("dx", "dy"):
        measured = (np.quantile(g[k], 0.95) - np.quantile(g[k], 0.05)) / 2
        assert 0.6 * spread[k] < measured < 1.15 * spread[k], (placement, k, measured, spread[k])  # large objects:
        # their centres are clipped to keep them inside the image (ILSVRC's dx: 0.66 of the real spread)


def test_placement_option_and_its_errors(tmp_path, capsys):
    assert main(["data", "synthetic", "--out", str(tmp_path / "s"), "--train", "10", "--val", "10", "--test", "10",
                 "--placement", "ilsvrc"]) == 0
    import yaml

    assert yaml.safe_load((tmp_path / "s" / "dataset.yaml").read_text())["synthetic"]["placement"] == "ilsvrc"
    with pytest.raises(DataError, match="--placement must be one of cub, ilsvrc, uniform, got 'x'"):
        SyntheticConfig(placement="x").validate()
    assert main(["data", "box-stats", str(tmp_path / "s"), "--json", str(tmp_path / "b.json")]) == 0
    assert "10 images, 1.00 boxes per image" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "b.json").read_text())["area"]["quantiles"]) == {str(q) for q in QUANTILES}


@pytest.mark.skipif(not METADATA.is_dir(), reason="no wsolevaluation metadata beside the checkout")
@pytest.mark.parametrize("dataset", ["CUB", "ILSVRC"])
def test_the_placements_are_the_real_test_boxes_quantiles(dataset, tmp_path):
    from tedloc.data import import_wsol

    stats = box_statistics(load_dataset(import_wsol(METADATA, dataset, tmp_path / "m")[0], splits=["test"])["test"])
    assert tuple(PLACEMENT_LEVELS) == QUANTILES
    for key in ("area", "dx", "dy"):
        measured = tuple(round(v, 4) for v in stats[key]["quantiles"].values())
        assert measured == PLACEMENTS[dataset.lower()][key], key
