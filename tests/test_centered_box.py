"""The centered-box baseline finds the best fixed size."""
from __future__ import annotations

import numpy as np

from tedloc.data import Split
from tedloc.methods.centered_box import centered_box_baseline, centered_box_map


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
