"""Box metrics: hand-computed fixtures (exact), and the union-find kernel against the contour search."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tedloc.data import Split
from tedloc.eval import WSOLEvaluator, normalize_scoremap, threshold_list
from tedloc.eval.boxes import BOX_BACKENDS, box_iou, boxes_at_cut, boxes_at_cuts, rescale_boxes
from tedloc.eval.scoremaps import ScoreMapError

BACKENDS = sorted(BOX_BACKENDS)
DENSE_DELTAS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))


def _split(gts, size=(10, 10), labels=None):
    n = len(gts)
    return Split("test", [f"im{i}" for i in range(n)], labels or [0] * n, [size] * n, gts)


def _square(shape, y0, y1, x0, x1, value=1.0):
    m = np.zeros(shape)
    m[y0:y1 + 1, x0:x1 + 1] = value
    return m


def test_threshold_list_is_numpy_arange():
    t = threshold_list(0.01)
    assert len(t) == 100 and t[0] == 0.0 and t[-1] == np.arange(0, 1, 0.01)[-1] and 1.0 not in t
    assert len(threshold_list(0.001)) == 1000
    assert np.array_equal(threshold_list(0.001), np.arange(0, 1, 0.001))


def test_iou_is_inclusive():
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 1.0
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 9, 9]])[0, 0] == 0.01
    assert box_iou([[2, 2, 6, 6]], [[2, 2, 5, 5]])[0, 0] == 16 / 25


def test_gt_rescale_multiplies_then_divides():
    # int(x * 224.0 / W): the reference's order of operations
    assert rescale_boxes([[0, 0, 499, 374]], (500, 375), (224, 224)).tolist() == [[0, 0, 223, 223]]
    x = 137
    assert rescale_boxes([[x, 0, x, 0]], (333, 10), (224, 224))[0, 0] == int(x * 224.0 / 333)


@pytest.mark.parametrize("backend", BACKENDS)
def test_box_rules_on_single_maps(backend):
    u8 = (_square((10, 10), 2, 5, 2, 5) * 255).astype(np.uint8)
    boxes, best = boxes_at_cut(u8, 0)
    assert boxes.tolist() == [[2, 2, 6, 6]] and best == 0  # exclusive right/bottom end
    full = np.full((10, 10), 127, np.uint8)
    assert boxes_at_cut(full, 0)[0].tolist() == [[0, 0, 9, 9]]  # clipped to W-1, H-1
    assert boxes_at_cut(np.zeros((10, 10), np.uint8), 0)[0].tolist() == [[0, 0, 0, 0]]  # no contour
    single = np.zeros((10, 10), np.uint8)
    single[5, 5] = 255
    assert boxes_at_cut(single, 0)[0].tolist() == [[5, 5, 6, 6]]
    v1, v2 = boxes_at_cuts(u8, np.array([0, 100]), np.array([[2, 2, 5, 5]]), backend)
    assert v1.tolist() == [[2, 2, 6, 6]] * 2 and v2.tolist() == [16 / 25] * 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_hole_contours_count_in_multi_box_mode(backend):
    ring = _square((10, 10), 1, 8, 1, 8)
    ring[4:6, 4:6] = 0
    u8 = (ring * 255).astype(np.uint8)
    gt = np.array([[3, 3, 6, 6]])
    v1, v2 = boxes_at_cuts(u8, np.array([0]), gt, backend)
    assert v1.tolist() == [[1, 1, 9, 9]]  # the outer border is the largest contour
    assert v2[0] == 16 / 25  # the hole's border box (3, 3, 7, 7) matches best


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_areas_pick_the_last_region_in_raster_order(backend):
    m = _square((10, 10), 0, 2, 0, 2) + _square((10, 10), 6, 8, 6, 8)
    v1, _ = boxes_at_cuts((m * 255).astype(np.uint8), np.array([0]), np.array([[6, 6, 8, 8]]), backend)
    assert v1.tolist() == [[6, 6, 9, 9]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_accumulation(backend):
    a = _square((10, 10), 2, 5, 2, 5)  # IoU 16/25 at every threshold
    b = np.full((10, 10), 0.5)  # full box: IoU 16/100
    c = _square((12, 12), 0, 2, 0, 2, 0.5) + _square((12, 12), 6, 11, 6, 11, 1.0)
    split = Split("test", ["a", "b", "c"], [0, 1, 2], [(10, 10), (10, 10), (12, 12)],
                  [[[2, 2, 5, 5]], [[2, 2, 5, 5]], [[0, 0, 2, 2]]])
    ev = WSOLEvaluator(split, interval=0.01, backend=backend)
    for image_id, m in zip("abc", (a, b, c)):
        ev.accumulate(image_id, m)
    r = ev.compute()
    # c: the largest contour is the 6x6 square (IoU 0 with the GT); the small one (IoU 9/16) counts
    # only in multi-box mode, and only while 127 > int(t * 255), i.e. for t <= 0.49 (50 thresholds)
    assert r["MaxBoxAcc"] == 1 * 100.0 / 3
    assert r["MaxBoxAcc@30"] == r["MaxBoxAcc@50"] == 2 * 100.0 / 3
    assert r["MaxBoxAcc@70"] == 0.0
    assert r["MaxBoxAccV2"] == np.average([2 * 100.0 / 3, 2 * 100.0 / 3, 0.0])
    assert r["threshold"] == 0.0 and r["threshold@50"] == 0.0  # ties: the lowest threshold
    curve = np.array(r["curves"]["BoxAcc@50"])
    assert (curve[:50] == 2 * 100.0 / 3).all() and (curve[50:] == 1 * 100.0 / 3).all()
    assert abs(r["mIoU"] - 100.0 * (16 / 25 + 16 / 100 + 0.0) / 3) < 1e-9
    assert r["GTKnownLoc"] == r["MaxBoxAcc"]


def test_several_gt_boxes_take_the_best():
    m = _square((10, 10), 2, 5, 2, 5)
    split = Split("test", ["a"], [0], [(10, 10)], [[[7, 7, 9, 9], [2, 2, 5, 5]]])
    ev = WSOLEvaluator(split)
    ev.accumulate("a", m)
    assert ev.compute()["MaxBoxAcc"] == 100.0


def test_maps_of_any_size_rescale_gt_boxes():
    # a 64x64 map of a 500x375 image: GT (100, 75, 299, 224) -> (12, 12, 38, 38)
    split = Split("test", ["a"], [0], [(500, 375)], [[[100, 75, 299, 224]]])
    m = _square((64, 64), 12, 37, 12, 37)
    ev = WSOLEvaluator(split)
    ev.accumulate("a", m)
    r = ev.compute()
    assert abs(r["mIoU"] - 100.0 * (27 * 27) / (27 * 27)) < 1e-9


def _stacked_rectangles(rng, h: int, w: int, max_count: int) -> np.ndarray:
    """A score map of 1..max_count - 1 random rectangles of random heights, summed, max 1."""
    s = np.zeros((h, w))
    for _ in range(int(rng.integers(1, max_count))):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        s[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] += rng.random()
    return s / max(s.max(), 1e-9)


def _assert_backends_agree(u8, cuts, gt, deltas=(0.3, 0.5, 0.7), where=None) -> None:
    """Same single boxes; multi-contour IoUs on the same side of every threshold, the kernel's never
    above the exact one (it skips hole boxes that cannot change a comparison)."""
    a1, a2 = boxes_at_cuts(u8, cuts, gt, "contours", deltas)
    b1, b2 = boxes_at_cuts(u8, cuts, gt, "unionfind", deltas)
    d = np.asarray(deltas)
    assert np.array_equal(a1, b1), where
    assert np.array_equal(a2[:, None] >= d, b2[:, None] >= d) and (b2 <= a2).all(), where


@pytest.mark.parametrize("seed", range(3))
def test_unionfind_equals_contour_search_on_random_maps(seed):
    if "unionfind" not in BOX_BACKENDS:
        pytest.skip("C kernel not built")
    rng = np.random.default_rng(seed)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        kind = trial % 4
        if kind == 0:
            s = rng.random((h, w))
        elif kind == 1:
            s = normalize_scoremap(rng.random((int(rng.integers(2, 7)), int(rng.integers(2, 7)))), (w, h))
        elif kind == 2:
            s = (rng.random((h, w)) < 0.5) * rng.choice([0.3, 1.0])
        else:
            s = _stacked_rectangles(rng, h, w, 5)
        u8 = (s * 255).astype(np.uint8)
        cuts = np.unique((threshold_list(float(rng.choice([0.01, 0.001, 0.05]))) * u8.max()).astype(np.int64))
        g = int(rng.integers(1, 4))
        x0, y0 = rng.integers(0, w, g), rng.integers(0, h, g)
        gt = np.stack([x0, y0, np.minimum(w - 1, x0 + rng.integers(0, w, g)),
                       np.minimum(h - 1, y0 + rng.integers(0, h, g))], 1)
        _assert_backends_agree(u8, cuts, gt, (0.3, 0.5, 0.7) if trial % 2 else DENSE_DELTAS, (seed, trial))


def test_cam_like_maps_at_224_both_backends_agree_on_all_metrics():
    rng = np.random.default_rng(5)
    n = 12
    split = Split("test", [f"{i}" for i in range(n)], [0] * n, [(448, 336)] * n,
                  [[[int(rng.integers(0, 200)), int(rng.integers(0, 150)), int(rng.integers(220, 447)),
                     int(rng.integers(170, 335))]] for _ in range(n)])
    maps = [normalize_scoremap(np.maximum(rng.normal(size=(14, 14)), 0), (224, 224)) for _ in range(n)]
    results = []
    for backend in BACKENDS:
        ev = WSOLEvaluator(split, interval=0.001, backend=backend)
        for i, m in enumerate(maps):
            ev.accumulate(str(i), m)
        results.append(ev.compute())
    for r in results[1:]:
        assert r == results[0]


def test_threshold_modes():
    m = np.zeros((10, 10))
    m[2:6, 2:6] = 0.6
    m[3:5, 3:5] = 1.0
    split = _split([[[2, 2, 5, 5]]])
    fixed = WSOLEvaluator(split, mode="fixed", tau=0.7)  # cut int(0.7*255)=178: only the 2x2 core
    fixed.accumulate("im0", m)
    r = fixed.compute()
    assert r["threshold"] == 0.7 and abs(r["mIoU"] - 100 * 9 / 16) < 1e-9
    otsu = WSOLEvaluator(split, mode="otsu")
    otsu.accumulate("im0", m)
    r = otsu.compute()
    assert r["threshold"] == "otsu" and r["MaxBoxAcc"] == 100.0
    with pytest.raises(ValueError, match="tau"):
        WSOLEvaluator(split, mode="fixed")


def test_top_k_localization():
    m = _square((10, 10), 2, 5, 2, 5)
    split = Split("test", ["a", "b", "c"], [0, 1, 2], [(10, 10)] * 3, [[[2, 2, 5, 5]]] * 3)
    ev = WSOLEvaluator(split)
    scores = np.array([[9, 1, 0, 0, 0, 0, 0], [9, 1, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 3]], float)
    for image_id, s in zip("abc", scores):
        ev.accumulate(image_id, m, s)
    r = ev.compute()
    assert r["CL@1"] == 100.0 / 3 and r["CL@5"] == 100.0
    assert r["Top1Loc"] == 100.0 / 3 and r["Top5Loc"] == 100.0 and r["GTKnownLoc"] == 100.0


def test_error_analysis_kinds():
    split = Split("test", ["part", "more", "multi"], [0] * 3, [(20, 20)] * 3,
                  [[[0, 0, 19, 19]], [[8, 8, 10, 10]], [[0, 0, 4, 4], [10, 10, 14, 14]]])
    ev = WSOLEvaluator(split, mode="fixed", tau=0.5)
    ev.accumulate("part", _square((20, 20), 5, 9, 5, 9))  # inside the object: IoP 1
    ev.accumulate("more", _square((20, 20), 2, 16, 2, 16))  # around it: the GT is inside
    ev.accumulate("multi", _square((20, 20), 0, 14, 0, 14))  # covers both instances
    r = ev.compute()
    assert r["error/LPE"] == r["error/LME"] == r["error/MIns"] == 100.0 / 3 and r["error/other"] == 0.0


def test_bad_maps_are_refused():
    split = _split([[[2, 2, 5, 5]]])
    ev = WSOLEvaluator(split)
    inf = np.zeros((10, 10), np.float32)
    inf[3, 4] = np.inf
    nan32 = np.zeros((10, 10), np.float32)
    nan32[9, 9] = np.nan
    for bad, msg in ((np.full((10, 10), np.nan), "NaN"), (np.full((10, 10), 1.5), "outside"),
                     (np.full((10, 10), -0.0001), "outside"), (inf, "NaN or inf"), (nan32, "NaN"),
                     (np.zeros((2, 10, 10)), "2-D"), (np.zeros((10, 10), np.int64), "float"),
                     (np.zeros((0, 10)), "empty")):
        with pytest.raises(ScoreMapError, match=msg):
            ev.accumulate("im0", bad)
    with pytest.raises(ScoreMapError, match="unknown image id"):
        ev.accumulate("nope", np.zeros((10, 10)))
    ev.accumulate("im0", np.zeros((10, 10)))
    with pytest.raises(ScoreMapError, match="twice"):
        ev.accumulate("im0", np.zeros((10, 10)))


def test_normalize_scoremap_rules():
    assert not normalize_scoremap(np.full((3, 3), 2.0)).any()
    nan = np.ones((3, 3))
    nan[0, 0] = np.nan
    assert not normalize_scoremap(nan).any()
    cam = np.arange(4.0).reshape(2, 2)
    out = normalize_scoremap(cam, (8, 8))
    ref = cv2.resize(cam, (8, 8), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out, (ref - ref.min()) / (ref - ref.min()).max())


def test_merge_is_exact():
    rng = np.random.default_rng(0)
    n = 10
    split = Split("test", [str(i) for i in range(n)], [0] * n, [(32, 32)] * n, [[[4, 4, 20, 24]]] * n)
    maps = [normalize_scoremap(rng.random((4, 4)), (32, 32)) for _ in range(n)]
    whole = WSOLEvaluator(split)
    parts = [WSOLEvaluator(split), WSOLEvaluator(split)]
    for i, m in enumerate(maps):
        whole.accumulate(str(i), m)
        parts[i % 2].accumulate(str(i), m)
    parts[0].merge(parts[1].state())
    assert parts[0].compute() == whole.compute()
    with pytest.raises(ScoreMapError, match="twice"):
        parts[0].merge(parts[1])


def test_c_kernel_is_built_in_ci():
    import os

    if os.environ.get("CI") == "true":
        assert "unionfind" in BOX_BACKENDS, "the C box kernel did not build; see setup.py"


def test_float32_maps_quantise_as_in_float64():
    # the reference multiplies float32 maps in float32; validate_scoremap keeps them float32. Every
    # float32 whose product with 255 could round across an integer lies within a few hundred ulps of
    # some k / 255: check all of those both ways.
    from tedloc.eval.scoremaps import to_uint8, validate_scoremap

    values = []
    for k in range(256):
        centre = np.float32(k / 255)
        ulps = np.arange(-1000, 1001, dtype=np.int64)
        values.append((centre.view(np.int32) + ulps).astype(np.int32).view(np.float32))
    s = np.concatenate(values)
    s = s[np.isfinite(s) & (s >= 0) & (s <= 1)].reshape(1, -1)
    kept = validate_scoremap(s)
    assert kept.dtype == np.float32
    assert np.array_equal(to_uint8(kept), to_uint8(s.astype(np.float64)))
    from tedloc.eval.scoremaps import quantize_scoremap  # the one-pass version (C), both precisions

    assert np.array_equal(quantize_scoremap(s)[1], to_uint8(kept))
    assert np.array_equal(quantize_scoremap(s.astype(np.float64))[1], to_uint8(kept))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pass_quantisation_equals_numpy(dtype):
    from tedloc.eval.scoremaps import quantize_scoremap, to_uint8, validate_scoremap

    rng = np.random.default_rng(3)
    s = np.concatenate([rng.random(5000), np.arange(256) / 255, [0.0, 1.0, np.nextafter(1.0, 0)]]).astype(dtype)
    s = s.reshape(1, -1)
    for m in (s, s[:, ::-1], s.T):  # also views that are not C-contiguous
        kept, u8 = quantize_scoremap(m, "x")
        assert kept.dtype == dtype and np.array_equal(kept, m)
        assert np.array_equal(u8, to_uint8(validate_scoremap(m))) and u8.shape == m.shape


def test_single_box_statistics_in_c_equal_the_definition():
    from tedloc.eval.box_metrics import single_box_stats, single_box_stats_numpy

    rng = np.random.default_rng(4)
    seen = set()
    for g in (1, 2, 5):
        gt = rng.integers(0, 30, (g, 2))
        gt = np.concatenate([gt, gt + rng.integers(0, 30, (g, 2))], 1)
        xy = rng.integers(0, 40, (300, 2))
        boxes = np.concatenate([xy, xy + rng.integers(0, 40, (300, 2))], 1)
        boxes[:3] = (0, 0, 0, 0)
        iou, kind = single_box_stats(boxes, gt)
        iou_ref, kind_ref = single_box_stats_numpy(boxes, gt)
        assert np.array_equal(iou, iou_ref) and np.array_equal(kind, kind_ref)
        seen |= set(kind.tolist())
    assert seen == {0, 1, 2, 3}  # every kind was compared


@pytest.mark.parametrize("backend", sorted(BOX_BACKENDS))
def test_cuts_out_of_order_are_refused(backend):
    u8 = np.zeros((5, 5), np.uint8)
    with pytest.raises(ValueError, match="non-decreasing"):
        boxes_at_cuts(u8, np.array([3, 2]), np.array([[0, 0, 1, 1]]), backend)


def test_nan_class_scores_are_never_correct():
    from tedloc.eval.evaluator import topk_correct

    nan = np.full(10, np.nan)
    assert not topk_correct(nan, 3, 1) and not topk_correct(nan, 3, 5)
    s = np.arange(10.0)
    s[0] = np.nan  # a NaN elsewhere ranks below the true class
    assert topk_correct(s, 9, 1) and not topk_correct(s, 3, 5) and topk_correct(s, 5, 5)


@pytest.mark.skipif("unionfind" not in BOX_BACKENDS, reason="C kernel not built")
def test_kernel_sees_every_column_of_wide_maps():
    # widths around the 64-bit words of the foreground bitmap (a stale word once hid columns >= 64)
    for w in [*range(1, 80), 127, 128, 129, 191, 200, 223, 224, 225, 300]:
        for x in sorted({0, 15, 16, 63, 64, 65, w // 2, w - 1}):
            if x >= w:
                continue
            u8 = np.zeros((3, w), np.uint8)
            u8[1, x] = 200
            v1, _ = boxes_at_cuts(u8, np.array([100]), np.array([[0, 0, 0, 0]]), "unionfind")
            assert v1.tolist() == [[x, 1, min(x + 1, w - 1), 2]], (w, x)


@pytest.mark.skipif("unionfind" not in BOX_BACKENDS, reason="C kernel not built")
def test_unionfind_equals_contour_search_on_large_random_maps():
    rng = np.random.default_rng(11)
    for trial in range(24):
        h, w = (int(v) for v in rng.integers(50, 260, 2))
        if trial % 2:
            s = normalize_scoremap(np.maximum(rng.normal(size=(int(rng.integers(3, 30)),) * 2), 0), (w, h))
        else:
            s = _stacked_rectangles(rng, h, w, 8)
        u8 = (s * 255).astype(np.uint8)
        cuts = (threshold_list(0.01) * u8.max()).astype(np.int64)
        gt = np.array([[int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2)), w - 1 - int(rng.integers(0, w // 2)),
                        h - 1 - int(rng.integers(0, h // 2))]])
        _assert_backends_agree(u8, cuts, gt, where=(trial, h, w))


@pytest.mark.skipif("unionfind" not in BOX_BACKENDS, reason="C kernel not built")
def test_busy_cam_like_maps_match_the_contour_search_at_every_threshold():
    # the benchmark's maps: about one threshold in 200 has components with holes that the area
    # bounds cannot order, where the kernel computes outer-contour areas exactly
    rng = np.random.default_rng(3)
    for _ in range(40):
        k = int(rng.choice([7, 14, 28]))
        cam = np.maximum(rng.normal(size=(k, k)) + cv2.GaussianBlur(rng.normal(size=(k, k)) * 3, (0, 0), k / 7), 0)
        u8 = (normalize_scoremap(cam, (224, 224)) * 255).astype(np.uint8)
        cuts = (threshold_list(0.01) * u8.max()).astype(np.int64)
        x0, y0 = (int(v) for v in rng.integers(0, 150, 2))
        gt = np.array([[x0, y0, x0 + int(rng.integers(10, 74)), y0 + int(rng.integers(10, 74))]])
        _assert_backends_agree(u8, cuts, gt)


@pytest.mark.skipif("unionfind" not in BOX_BACKENDS, reason="C kernel not built")
def test_nested_holes_found_inside_the_union_of_the_boxes_concerned():
    # rings inside the holes of rings, with holes of their own, next to a second ringed object: the
    # kernel searches holes only inside the union of the boxes of the components that need them
    def rings(size: int, levels: list[int]) -> np.ndarray:
        yy, xx = np.mgrid[:size, :size]
        ring = np.maximum(abs(yy - size // 2), abs(xx - size // 2)) // 3  # square rings 3 pixels wide
        return np.asarray(levels, dtype=np.uint8)[np.minimum(ring, len(levels) - 1)]

    u8 = np.zeros((60, 90), np.uint8)
    u8[2:33, 3:34] = rings(31, [250, 40, 200, 60, 150, 90, 120, 30, 10, 0, 0])
    u8[20:51, 50:81] = rings(31, [180, 170, 0, 160, 20, 140, 230, 30, 220, 5, 0])
    u8[52:58, 2:88] = 100  # a plain bar along the bottom
    cuts = np.unique((threshold_list(0.01) * u8.max()).astype(np.int64))
    tree = {tuple(b) for c in cuts for b in boxes_at_cut(u8, int(c))[0].tolist()}
    outer = set()
    for c in cuts:
        contours = cv2.findContours((u8 > c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            outer.add((x, y, min(x + w, 89), min(y + h, 59)))
    hole_boxes = sorted(tree - outer)
    assert len(hole_boxes) >= 3  # the GT boxes below are exactly hole boxes at some thresholds
    for gt in hole_boxes + sorted(outer):
        _assert_backends_agree(u8, cuts, np.array([gt]), where=gt)
        _assert_backends_agree(u8, cuts, np.array([gt, hole_boxes[0]]), deltas=(0.1, 0.5, 0.9, 0.99), where=gt)


@pytest.mark.skipif("unionfind" not in BOX_BACKENDS, reason="C kernel not built")
def test_maps_beyond_the_kernels_limits_use_the_contour_search(monkeypatch):
    import tedloc.eval.boxes as boxes

    def refuse(*args):
        raise AssertionError("the kernel must not see this map")

    u8 = (np.random.default_rng(5).random((20, 30)) * 255).astype(np.uint8)
    cuts, gt = np.array([50, 120, 200]), np.array([[2, 3, 20, 15]])
    expected = boxes_at_cuts(u8, cuts, gt, "contours")
    monkeypatch.setattr(boxes, "_KERNEL_MAX_PIXELS", 599)  # 20 x 30 = 600 pixels
    monkeypatch.setattr(boxes, "_box_kernel", refuse)
    got = boxes_at_cuts(u8, cuts, gt, "unionfind")
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_top_k_localization_at_a_val_threshold_beside_the_oracle_one():
    """Top-1 Loc at the oracle threshold (best on this split's boxes) and at a val threshold differ, by hand.

    Every map: a 12x12 square of 0.6 (pixels 2-13) with a 4x4 corner of 1.0 (pixels 2-5), u8 153 and 255.
    Thresholds below 0.6 give the square's box (2, 2, 14, 14) (x + w, the reference's), from 0.6 on
    (cut int(t * 255) >= 153) the corner's (2, 2, 6, 6). Images a0-a2 have the square (2, 2, 13, 13) as GT box:
    IoU 144/169 with the square's box, 25/144 with the corner's; b has the corner (2, 2, 5, 5): 16/169 and 16/25.
    a2's class is second (wrong for top-1, right for top-5). Oracle: the square's box localises a0-a2 (GT-known
    3/4), the corner's only b (1/4), so the threshold is the lowest, 0.0: Top-1 Loc = a0, a1 = 2/4, Top-5 Loc =
    3/4. At the val threshold 0.7 only b: GT-known = Top-1 = Top-5 Loc = 1/4, mIoU = (3 * 25/144 + 16/25) / 4.
    """
    m = _square((20, 20), 2, 13, 2, 13, 0.6)
    m[2:6, 2:6] = 1.0
    square, core = [[2, 2, 13, 13]], [[2, 2, 5, 5]]
    split = Split("test", ["a0", "a1", "a2", "b"], [0, 0, 0, 0], [(20, 20)] * 4, [square, square, square, core])
    right, second = np.array([9.0, 1, 0, 0, 0, 0, 0]), np.array([1.0, 9, 0, 0, 0, 0, 0])
    scores = {"a0": right, "a1": right, "a2": second, "b": right}
    ev = WSOLEvaluator(split, val_threshold=0.7)
    for image_id, s in scores.items():
        ev.accumulate(image_id, m, s)
    r = ev.compute()
    assert r["threshold"] == 0.0 and r["GTKnownLoc"] == 75.0 and r["Top1Loc"] == 50.0 and r["Top5Loc"] == 75.0
    assert r["val_threshold"] == 0.7 and r["GTKnownLoc@val_thr"] == 25.0
    assert r["Top1Loc@val_thr"] == 25.0 and r["Top5Loc@val_thr"] == 25.0
    assert abs(r["mIoU@val_thr"] - 100 * (3 * 25 / 144 + 16 / 25) / 4) < 1e-9
    fixed = WSOLEvaluator(split, mode="fixed", tau=0.7)  # the same numbers as the fixed mode at that threshold
    for image_id, s in scores.items():
        fixed.accumulate(image_id, m, s)
    f = fixed.compute()
    assert [f[k] for k in ("GTKnownLoc", "Top1Loc", "Top5Loc", "mIoU")] == [
        r[k + "@val_thr"] for k in ("GTKnownLoc", "Top1Loc", "Top5Loc", "mIoU")]
    halves = [WSOLEvaluator(split, val_threshold=0.7) for _ in range(2)]  # sums of shards merge exactly
    for j, (image_id, s) in enumerate(scores.items()):
        halves[j % 2].accumulate(image_id, m, s)
    halves[0].merge(halves[1].state())
    merged = halves[0].compute()
    assert all(merged[k] == r[k] for k in ("Top1Loc", "Top1Loc@val_thr", "Top5Loc@val_thr", "mIoU@val_thr"))
    without = WSOLEvaluator(split)
    without.accumulate("a0", m, right)
    assert not any(k.endswith("@val_thr") for k in without.compute()) and "val_threshold" not in without.compute()
    with pytest.raises(ValueError, match="different val thresholds"):
        WSOLEvaluator(split, val_threshold=0.5).merge(WSOLEvaluator(split, val_threshold=0.7).state())
    with pytest.raises(ValueError, match="val threshold must be in"):
        WSOLEvaluator(split, val_threshold=1.0)
