"""The no-look baselines: the centered box finds the best fixed size; the centered Gaussian."""
from __future__ import annotations

import json

import numpy as np

from tedloc.data import Split
from tedloc.methods.centered_box import CENTERED_GAUSSIAN_SIGMA, centered_box_baseline, centered_box_map, \
    centered_box_metrics, centered_gaussian_map, centered_gaussian_metrics


def test_centered_box_map():
    m = centered_box_map(8, 0.5)
    assert m.sum() == 16 and m[2:6, 2:6].all()


def test_best_fraction_matches_the_objects():
    # every object is the centered half of a 100x100 image: (25, 25, 74, 74)
    n = 6
    split = Split("test", [str(i) for i in range(n)], [0] * n, [(100, 100)] * n, [[[25, 25, 74, 74]]] * n)
    fraction, metrics = centered_box_baseline(split, size=64)
    assert abs(fraction - 0.5) < 1e-9 and metrics["MaxBoxAcc"] == 100.0
    assert np.isclose(metrics["mIoU"], 100 * (32 * 32) / (33 * 33))  # the contour box is one pixel larger


def test_centered_gaussian_map_is_a_centered_isotropic_bump():
    m = centered_gaussian_map(8)
    assert m.shape == (8, 8) and np.allclose(m, m[::-1]) and np.allclose(m, m[:, ::-1]) and np.allclose(m, m.T)
    assert np.allclose(m[3:5, 3:5], m.max()) and 0 < m.min() < m.max() <= 1
    u = (2 * (np.arange(8) + 0.5) / 8 - 1)  # pixel centres in [-1, 1]
    assert np.isclose(m[0, 3], np.exp(-(u[0] ** 2 + u[3] ** 2) / (2 * CENTERED_GAUSSIAN_SIGMA ** 2)))


def test_centered_gaussian_finds_centered_objects_and_misses_corner_ones():
    n = 4
    centered = Split("test", [str(i) for i in range(n)], [0] * n, [(100, 100)] * n, [[[25, 25, 74, 74]]] * n)
    assert centered_gaussian_metrics(centered, size=64)["MaxBoxAcc"] == 100.0
    corner = Split("test", [str(i) for i in range(n)], [0] * n, [(100, 100)] * n, [[[0, 0, 19, 19]]] * n)
    assert centered_gaussian_metrics(corner, size=64)["MaxBoxAcc"] == 0.0


def test_baseline_commands_choose_on_val_and_score_the_split(synthetic_small, tmp_path, capsys):
    from tedloc.cli import main
    from tedloc.data import load_dataset

    data = load_dataset(synthetic_small)
    assert main(["baseline", "centered-box", "--data", str(synthetic_small), "--size", "48",
                 "--json", str(tmp_path / "box.json")]) == 0
    box = json.loads((tmp_path / "box.json").read_text())
    fraction, _ = centered_box_baseline(data["val"], 48)
    assert box["box_fraction"] == fraction and box["chosen_on"] == "val"
    assert box["MaxBoxAcc"] == centered_box_metrics(data["test"], 48, fraction)["MaxBoxAcc"]
    assert main(["baseline", "centered-gaussian", "--data", str(synthetic_small), "--size", "48",
                 "--json", str(tmp_path / "gauss.json")]) == 0
    gauss = json.loads((tmp_path / "gauss.json").read_text())
    assert gauss["MaxBoxAcc"] == centered_gaussian_metrics(data["test"], 48)["MaxBoxAcc"]
    assert 0.0 < gauss["PxAP"] < 100.0 and "centered Gaussian" in capsys.readouterr().out


def test_a_sigma_that_is_not_positive_is_one_line(synthetic_small, capsys):
    from tedloc.cli import main

    assert main(["baseline", "centered-gaussian", "--data", str(synthetic_small), "--sigma", "0"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.endswith("sigma must be > 0, got 0.0") and "\n" not in err
