"""TrCAM-V's parts on hand-made inputs: the Otsu seeder (threshold, ROI, FG/BG draws), the extended log-barrier
size loss and its ``t`` schedule, and CorLoc (per class, pooled, at a fixed threshold, CL)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from tedloc.data.dataset import Split
from tedloc.eval.corloc import CorLocAccumulator
from tedloc.models.size_loss import LogBarrierSchedule, absolute_size_loss, log_barrier
from tedloc.pseudolabels.otsu_seeds import (
    OtsuSeederConfig,
    otsu_threshold,
    region_of_interest,
    sample_otsu_seeds,
)
from tedloc.pseudolabels.pixel_seeds import IGNORE

I = IGNORE


def _smooth_map(rng: np.random.Generator, shape=(32, 40), sigma=3.0) -> np.ndarray:
    """A random smooth map min-max normalised to [0, 1], float32."""
    m = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma)
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def _uniforms(shape, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random(shape))


# ------------------------------------------------------------------------------------------------ Otsu threshold
def test_otsu_bimodal_split():
    values = np.array([0.0] * 50 + [200.0] * 50)
    t = otsu_threshold(values)
    assert 0 < t < 200
    # every split between the modes is as good; the first wins: the centre of the first of 256 bins over [0, 200]
    assert t == 200 / 256 / 2


def test_otsu_hand_computed():
    """[0, 0, 0, 1, 1, 4]: 256 bins of width 1/64 over [0, 4]; bin centres (k + 0.5)/64. Splitting {0} | {1, 4}
    gives 3*3*(1/128 - 6.0078125/3)^2 = 35.81; {0, 1} | {4} gives 5*1*(2.0390625/5 - 255.5/64)^2 = 64.24, the
    best: the threshold is the centre of bin 64 (the first bin of that split), 64.5/64."""
    assert otsu_threshold(np.array([0, 0, 0, 1, 1, 4], dtype=np.float32)) == 64.5 / 64
    assert otsu_threshold(np.array([[4, 1], [0, 1], [0, 0]])) == 64.5 / 64  # any shape and dtype


def test_otsu_equals_scikit_image_when_installed():
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.floor(255 * _smooth_map(rng)).astype(np.float64)
        assert otsu_threshold(values) == pytest.approx(filters.threshold_otsu(values), abs=1e-9)


def test_otsu_constant():
    assert otsu_threshold(np.full((3, 4), 3.5)) == 3.5
    assert otsu_threshold(np.zeros(7)) == 0.0


# ------------------------------------------------------------------------------------------------ ROI
def test_roi_all_is_the_otsu_cut():
    rng = np.random.default_rng(1)
    for _ in range(5):
        cam = _smooth_map(rng)
        expected = cam * 255.0 >= otsu_threshold(np.floor(cam * 255.0))
        roi = region_of_interest(cam, "all")
        assert roi.dtype == bool and np.array_equal(roi, expected)
        assert 0 < roi.sum() < roi.size
    two_levels = np.zeros((8, 8), np.float32)
    two_levels[2:5, 3:7] = 0.7
    assert np.array_equal(region_of_interest(two_levels, "all"), two_levels > 0)


def _two_blobs() -> np.ndarray:
    """40x40: a large weak blob (20x20 at 0.5, 25% of the map) and a small strong one (4x4 at 1.0, 1%)."""
    cam = np.zeros((40, 40), np.float32)
    cam[2:22, 2:22] = 0.5
    cam[30:34, 30:34] = 1.0
    return cam


def test_roi_densest_prefers_density_unless_too_small():
    cam = _two_blobs()
    weak, strong = np.zeros_like(cam, bool), np.zeros_like(cam, bool)
    weak[2:22, 2:22] = True
    strong[30:34, 30:34] = True
    assert np.array_equal(region_of_interest(cam, "all"), weak | strong)
    assert np.array_equal(region_of_interest(cam, "densest", min_area=0.005), strong)  # 1% >= 0.5%
    assert np.array_equal(region_of_interest(cam, "densest", min_area=0.05), weak)  # 1% < 5%: the largest
    assert np.array_equal(region_of_interest(cam, "densest", min_area=0.01), strong)  # at the limit: kept


def test_roi_uses_4_connectivity():
    cam = np.zeros((10, 10), np.float32)
    cam[0:3, 0:3] = 1.0  # touches the next block by a corner only
    cam[3:6, 3:6] = 0.9
    both = cam > 0
    assert np.array_equal(region_of_interest(cam, "all"), both)
    assert np.array_equal(region_of_interest(cam, "densest", min_area=0.05), cam == 1.0)


def test_roi_constant_map_is_empty():
    for value in (0.0, 0.3, 1.0):
        for method in ("all", "densest"):
            roi = region_of_interest(np.full((6, 5), value, np.float32), method)
            assert roi.shape == (6, 5) and not roi.any()


# ------------------------------------------------------------------------------------------------ seeds
ONE = OtsuSeederConfig(fg_count=1, bg_count=1, dilation=1)


def test_one_fg_and_one_bg_seed_in_their_pools():
    rng = np.random.default_rng(2)
    maps = torch.from_numpy(np.stack([_smooth_map(rng) for _ in range(6)]))
    b, h, w = maps.shape
    labels = sample_otsu_seeds(maps, _uniforms((b, h * w), 3), _uniforms((b, h * w), 4), ONE)
    assert labels.shape == (b, h, w) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) <= {1, 0, IGNORE} and IGNORE == -255
    for cam, lab in zip(maps.numpy(), labels.numpy()):
        assert (lab == 1).sum() == 1 and (lab == 0).sum() == 1
        roi = region_of_interest(cam, ONE.roi, ONE.min_roi_area)
        fg = tuple(np.argwhere(lab == 1)[0])
        assert roi[fg]
        # inside the top floor(0.6 |ROI|) of S in the ROI (distinct values: ranks are well defined)
        in_roi = np.sort(cam[roi])[::-1]
        assert cam[fg] >= in_roi[math.floor(ONE.fg_pool * roi.sum()) - 1]
        bg = tuple(np.argwhere(lab == 0)[0])
        assert cam[bg] <= np.sort(cam.ravel())[int(ONE.bg_pool * h * w) - 1]


def test_fg_pool_size_is_the_public_codes():
    """floor(fg_pool |ROI|) as the public code computes it, ``int(max_p * n)`` in float32: 0.7 * 90 is 63 there
    (62.99... in float64)."""
    cam = np.zeros((20, 20), np.float32)
    cam[3:12, 4:14] = 0.9
    cam[5:8, 6:9] = 1.0
    assert region_of_interest(cam, "all").sum() == 90
    u = _uniforms((1, 400), 0)
    for fg_pool, expected in ((0.7, 63), (0.6, 54), (0.5, 45)):
        cfg = OtsuSeederConfig(fg_count=400, bg_count=0, fg_pool=fg_pool, roi="all", dilation=1)
        assert (sample_otsu_seeds(torch.from_numpy(cam)[None], u, u, cfg) == 1).sum() == expected


def test_dilation_grows_each_seed_to_3x3_at_most():
    rng = np.random.default_rng(5)
    maps = torch.from_numpy(np.stack([_smooth_map(rng) for _ in range(4)]))
    b, h, w = maps.shape
    u_fg, u_bg = _uniforms((b, h * w), 6), _uniforms((b, h * w), 7)
    single = sample_otsu_seeds(maps, u_fg, u_bg, ONE)
    grown = sample_otsu_seeds(maps, u_fg, u_bg, OtsuSeederConfig(fg_count=1, bg_count=1, dilation=3))
    for s, g in zip(single.numpy(), grown.numpy()):
        for label in (1, 0):
            (y, x), = np.argwhere(s == label)
            assert g[y, x] == label
            ys, xs = np.nonzero(g == label)
            assert 1 < len(ys) <= 9 and ys.min() >= y - 1 and ys.max() <= y + 1 and xs.min() >= x - 1 \
                and xs.max() <= x + 1


def test_overlapping_fg_and_bg_become_ignore():
    """The map's maximum (1, 1) is the only FG candidate (fg_pool 0.1 of a 15-pixel ROI), its right
    neighbour (1, 2) the only BG one (bg_pool 1/16): their 3x3 squares overlap on columns 1-2."""
    cam = np.full((4, 4), 0.5, np.float32)
    cam[1, 1], cam[1, 2] = 1.0, 0.0
    cfg = OtsuSeederConfig(fg_pool=0.1, bg_pool=1 / 16, roi="all", dilation=3)
    labels = sample_otsu_seeds(torch.from_numpy(cam)[None], _uniforms((1, 16), 0), _uniforms((1, 16), 1), cfg)
    assert labels[0].tolist() == [[1, I, I, 0],
                                  [1, I, I, 0],
                                  [1, I, I, 0],
                                  [I, I, I, I]]


def test_constant_map_gives_no_seed_and_others_do():
    maps = torch.stack([torch.full((8, 8), 0.4), torch.from_numpy(_smooth_map(np.random.default_rng(0), (8, 8), 1.5))])
    labels = sample_otsu_seeds(maps, _uniforms((2, 64), 0), _uniforms((2, 64), 1), ONE)
    assert (labels[0] == IGNORE).all()
    assert (labels[1] == 1).sum() == 1 and (labels[1] == 0).sum() == 1
    assert sample_otsu_seeds(torch.zeros(0, 8, 8), torch.zeros(0, 64), torch.zeros(0, 64)).shape == (0, 8, 8)


def test_draws_follow_the_uniforms():
    rng = np.random.default_rng(8)
    maps = torch.from_numpy(np.stack([_smooth_map(rng, (24, 24), 2.0) for _ in range(3)]))
    cfg = OtsuSeederConfig(fg_count=3, bg_count=3, dilation=3)
    u = [(_uniforms((3, 576), 2 * k), _uniforms((3, 576), 2 * k + 1)) for k in range(4)]
    first = sample_otsu_seeds(maps, *u[0], cfg)
    assert torch.equal(first, sample_otsu_seeds(maps.clone(), u[0][0].clone(), u[0][1].clone(), cfg))
    others = [sample_otsu_seeds(maps, *pair, cfg) for pair in u[1:]]
    for label in (1, 0):  # other uniforms move both the FG and the BG seeds
        assert any(not torch.equal(first == label, o == label) for o in others)


def test_fg_draw_is_proportional_to_the_map():
    """Pool of two pixels, S = 0.2 and 0.8: 100 zeros, 123 pixels at 40.5/255 (the ROI's low end, so Otsu's cut
    falls below 0.2), and fg_pool 0.02 of the 125-pixel ROI (2 pixels). Over 2,000 seeded draws the 0.8 pixel
    wins 80% of the time."""
    cam = np.zeros(225, np.float32)
    cam[100:223], cam[223], cam[224] = 40.5 / 255, 0.2, 0.8
    cam = cam.reshape(15, 15)
    assert region_of_interest(cam, "all").sum() == 125
    n = 2000
    cfg = OtsuSeederConfig(fg_count=1, bg_count=0, fg_pool=0.02, roi="all", dilation=1)
    maps = torch.from_numpy(cam)[None].expand(n, 15, 15).contiguous()
    labels = sample_otsu_seeds(maps, _uniforms((n, 225), 11), _uniforms((n, 225), 12), cfg).reshape(n, 225)
    assert ((labels == 1).sum(dim=1) == 1).all()
    picked = (labels == 1).float().mean(dim=0)
    assert picked[223].item() + picked[224].item() == pytest.approx(1.0)
    assert abs(picked[224].item() - 0.8) < 0.04 and abs(picked[223].item() - 0.2) < 0.04, picked[223:].tolist()


# ------------------------------------------------------------------------------------------------ log-barrier
def _psi(z: float, t: float) -> float:
    if z <= -1 / t ** 2:
        return -math.log(-z) / t
    return t * z - math.log(1 / t ** 2) / t + 1 / t


@pytest.mark.parametrize("t,z,expected", [
    (1.0, -4.0, -math.log(4.0)),
    (1.0, -1.0, 0.0),  # the bound itself: the log branch
    (1.0, -0.5, 0.5),  # -0.5 - 0 + 1
    (1.0, 0.5, 1.5),
    (1.0, 3.0, 4.0),
    (2.7, -4.0, -math.log(4.0) / 2.7),
    (2.7, -1000.0, -math.log(1000.0) / 2.7),
    (2.7, -0.1, -0.27 + 2 * math.log(2.7) / 2.7 + 1 / 2.7),  # above -1/7.29: the linear branch
    (2.7, 0.5, 1.35 + 2 * math.log(2.7) / 2.7 + 1 / 2.7),
])
def test_log_barrier_values(t, z, expected):
    assert expected == pytest.approx(_psi(z, t), abs=1e-12)
    got = log_barrier(torch.tensor([z]), t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("t", [1.0, 2.7, 10.0])
def test_log_barrier_continuity_and_gradients(t):
    bound = -1 / t ** 2
    eps = 1e-4 * abs(bound)
    z = torch.tensor([bound - eps, bound, bound + eps, -5.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    out = log_barrier(z, t)
    at = 2 * math.log(t) / t  # both branches' value at the bound
    assert out[1].item() == pytest.approx(at, abs=1e-6)
    assert out[0].item() == pytest.approx(at, abs=1e-3) and out[2].item() == pytest.approx(at, abs=1e-3)
    out.sum().backward()
    grad = z.grad.tolist()
    assert all(math.isfinite(g) for g in grad)
    assert grad[3] == pytest.approx(1 / (5 * t), rel=1e-5)  # -1 / (t z)
    assert grad[4] == pytest.approx(t) and grad[5] == pytest.approx(t) and grad[2] == pytest.approx(t)
    assert grad[0] == pytest.approx(-1 / (t * (bound - eps)), rel=1e-4)  # t just inside: 1/(t |z|) ~ t


def test_absolute_size_loss_by_hand():
    fg = torch.tensor([[[0.25, 0.5], [0.75, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    probs = torch.stack([1 - fg, fg], dim=1)  # (2, 2, 2, 2): BG sizes 1.5, 2; FG sizes 2.5, 2
    for t in (1.0, 2.7):
        expected = 0.5 * ((_psi(-1.5, t) + _psi(-2.0, t)) / 2 + (_psi(-2.5, t) + _psi(-2.0, t)) / 2)
        assert absolute_size_loss(probs, t).item() == pytest.approx(expected, rel=1e-6)
    tiny = torch.stack([1 - fg[:, :1, :1] * 0 - 0.8, fg[:, :1, :1] * 0 + 0.8], dim=1)  # sizes 0.2, 0.8 < 1
    assert absolute_size_loss(tiny, 1.0).item() == pytest.approx(0.5 * (_psi(-0.2, 1.0) + _psi(-0.8, 1.0)),
                                                                 rel=1e-6)


def test_absolute_size_loss_decreases_when_both_regions_grow():
    probs = torch.softmax(torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    bigger = probs.repeat(1, 1, 2, 2)  # both sizes x4
    for t in (1.0, 2.7, 10.0):
        assert absolute_size_loss(bigger, t) < absolute_size_loss(probs, t)
        assert absolute_size_loss(bigger, t).item() == pytest.approx(
            absolute_size_loss(probs, t).item() - math.log(4) / t, rel=1e-5)
    logits = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    absolute_size_loss(torch.softmax(logits, dim=1), 1.0).backward()
    assert torch.isfinite(logits.grad).all()


def test_log_barrier_schedule():
    s = LogBarrierSchedule()
    assert s.t(0) == 1.0
    assert s.t(1) == pytest.approx(1.01, rel=1e-7)
    assert s.t(100) == pytest.approx(1.01 ** 100, rel=1e-5) and s.t(100) == pytest.approx(2.7048, abs=1e-4)
    ts = [s.t(e) for e in range(0, 300, 10)]
    assert ts == sorted(ts)
    assert s.t(231) < 10.0 and s.t(232) == 10.0 and s.t(1000) == 10.0  # 1.01^232 > 10: capped at max_t
    assert LogBarrierSchedule(init_t=2.0, factor=1.0, max_t=5.0).t(50) == 2.0
    with pytest.raises(ValueError):
        LogBarrierSchedule(init_t=5.0, max_t=2.0)


# ------------------------------------------------------------------------------------------------ CorLoc
# Every frame's map (32x32) has an outer rectangle at 0.4 (rows/cols 4..23) around an inner one at 1.0
# (10..15). u8 = floor(255 s): 102 and 255; cuts int(tau * 255) at taus 0, .25, .5, .75 are 0, 63, 127, 191:
# the two low ones keep the outer rectangle, box (4, 4, 24, 24), the two high ones the inner one, box
# (10, 10, 16, 16) (a contour's box is one pixel larger). Frames are 64x48: x halves, y times 2/3, truncated.
THRESHOLDS = np.array([0.0, 0.25, 0.5, 0.75])
OUTER = [8, 6, 48, 36]  # -> (4, 4, 24, 24) on the map: IoU 1 with the low-threshold box
INNER = [20, 15, 32, 24]  # -> (10, 10, 16, 16): IoU 1 with the high-threshold box
FAR = [50, 40, 60, 46]  # -> (25, 26, 30, 30): matches nothing
FRAMES = [  # (class, GT boxes) -> correct at taus
    (0, [OUTER]),  # low
    (0, [OUTER]),  # low
    (0, [INNER]),  # high
    (1, [INNER]),  # high
    (1, [FAR, INNER]),  # high: any GT box counts
    (1, [INNER, OUTER]),  # all
]


def _map() -> np.ndarray:
    m = np.zeros((32, 32))
    m[4:24, 4:24] = 0.4
    m[10:16, 10:16] = 1.0
    return m


def _accumulator(scores=None) -> CorLocAccumulator:
    n = len(FRAMES)
    split = Split("test", [f"f{i}.jpg" for i in range(n)], [c for c, _ in FRAMES], [(64, 48)] * n,
                  [b for _, b in FRAMES])
    acc = CorLocAccumulator(split, THRESHOLDS, ["cat", "dog"])
    for i in range(n):
        acc.accumulate(f"f{i}.jpg", _map(), None if scores is None else scores[i])
    return acc


def test_corloc_per_class_thresholds():
    acc = _accumulator()
    assert acc.hits.astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1],
                                             [1, 1, 1, 1]]
    curves = acc.box_accuracy()
    np.testing.assert_allclose(curves[0], [200 / 3, 200 / 3, 100 / 3, 100 / 3])
    np.testing.assert_allclose(curves[1], [100 / 3, 100 / 3, 100.0, 100.0])
    r = acc.compute()
    assert r["CorLoc_per_class"] == pytest.approx({"cat": 200 / 3, "dog": 100.0})
    assert r["CorLoc_thresholds"] == {"cat": 0.0, "dog": 0.5}  # a threshold per class, the first best
    assert r["CorLoc"] == pytest.approx((200 / 3 + 100) / 2)
    assert r["frames"] == 6 and r["iou"] == 0.5
    assert acc.pooled_threshold() == pytest.approx((0.5, 400 / 6))  # pooled hits per tau: 3, 3, 4, 4


def test_corloc_at_a_fixed_threshold():
    acc = _accumulator()
    r = acc.compute(fixed_threshold=0.5)
    assert r["tau"] == 0.5
    assert r["CorLoc@tau_per_class"] == pytest.approx({"cat": 100 / 3, "dog": 100.0})
    assert r["CorLoc@tau"] == pytest.approx((100 / 3 + 100) / 2)
    r = acc.compute(fixed_threshold=0.3)  # the nearest listed threshold: 0.25
    assert r["tau"] == 0.25 and r["CorLoc@tau_per_class"] == pytest.approx({"cat": 200 / 3, "dog": 100 / 3})
    assert r["CorLoc@tau"] == pytest.approx(50.0)
    assert r["CorLoc"] == pytest.approx((200 / 3 + 100) / 2)  # the oracle value does not change


def test_corloc_needs_the_rescaled_boxes():
    """The same GT boxes given in map pixels (as if the frame were 32x32) miss: rescaling matters."""
    n = len(FRAMES)
    split = Split("test", [f"f{i}.jpg" for i in range(n)], [c for c, _ in FRAMES], [(32, 32)] * n,
                  [b for _, b in FRAMES])
    acc = CorLocAccumulator(split, THRESHOLDS, ["cat", "dog"])
    for i in range(n):
        acc.accumulate(f"f{i}.jpg", _map())
    assert acc.compute()["CorLoc"] < 50


def test_corloc_cl_and_unseen_frames():
    scores = np.array([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.2, 0.9]])  # 4 of 6 right
    r = _accumulator(scores).compute()
    assert r["CL"] == pytest.approx(400 / 6)
    n = len(FRAMES)
    split = Split("test", [f"f{i}.jpg" for i in range(n)], [c for c, _ in FRAMES], [(64, 48)] * n,
                  [b for _, b in FRAMES])
    acc = CorLocAccumulator(split, THRESHOLDS, ["cat", "dog"])
    for i in (0, 1, 3):  # frames never scored count nowhere
        acc.accumulate(f"f{i}.jpg", _map(), scores[i])
    r = acc.compute()
    assert r["frames"] == 3 and r["CL"] == pytest.approx(200 / 3)
    assert r["CorLoc_per_class"] == pytest.approx({"cat": 100.0, "dog": 100.0})
    assert r["CorLoc_thresholds"] == {"cat": 0.0, "dog": 0.5}
    empty = CorLocAccumulator(split, THRESHOLDS, ["cat", "dog"]).compute(fixed_threshold=0.5)
    assert math.isnan(empty["CorLoc"]) and empty["CorLoc_per_class"] == {} and math.isnan(empty["CorLoc@tau"])
