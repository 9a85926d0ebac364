"""Side-by-side with the public TCAM/TrCAM-V code (sbelharbi/tcam-wsol-video), when a checkout is given.

Set ``TEDLOC_TCAM_REF=/path/to/tcam-wsol-video`` to run (its seeder, losses and metrics files are the TrCAM
code's). The reference is imported at test time only, never copied into tedloc: its packages' ``__init__``
files (which pull in every model of the project) are bypassed by empty package modules pointing at its folders,
the modules it imports but that are not installed and that these parts never call are stubbed (``kornia``'s
morphology, used only for seed dilation and erosion; ``pynvml``; ``munch``, a dict with attribute access; the
CRF losses, a compiled extension), its ``ELB`` builds its buffers on the CPU instead of ``cuda:<current>``,
and ``np.float`` (gone from numpy 2) is put back while it runs. The reference needs scikit-image
(``pip install scikit-image``), a test-time dependency only.

Compared on seeded random smooth maps: the ROIs (``roi_all`` and ``roi_high_density``), the FG/BG candidate
pools before the random draw (tedloc draws with keyed uniforms, the reference with ``torch.multinomial``: only
the distributions are compared), the ELB loss and its ``t`` schedule, the absolute size loss, and per-class
CorLoc (the reference's ``BoxEvaluator`` on each class's frames, as TrCAM's ``corloc_perclass`` runs it).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REF = os.environ.get("TEDLOC_TCAM_REF")
pytestmark = pytest.mark.skipif(
    not REF, reason="set TEDLOC_TCAM_REF to a checkout of sbelharbi/tcam-wsol-video (needs scikit-image)")

_EMPTY_PACKAGES = ("dlib", "dlib.cams", "dlib.utils", "dlib.metrics", "dlib.losses", "dlib.datasets", "dlib.crf")


def _not_installed(*args, **kwargs):
    raise ImportError("stubbed by tedloc's parity test: not needed by the parts compared")


class _Munch(dict):
    """``munch.Munch``: a dict whose keys are attributes too (the reference's metadata record)."""

    __getattr__ = dict.__getitem__

    def __setattr__(self, key, value):
        self[key] = value


class _CpuTorch(types.ModuleType):
    """``torch`` for the reference's ELB module: every name is torch's, but ``torch.device(...)`` is the CPU."""

    def __init__(self):
        super().__init__("torch")
        self.device = lambda *args, **kwargs: torch.device("cpu")
        self.cuda = types.SimpleNamespace(current_device=lambda: 0)

    def __getattr__(self, name):
        return getattr(torch, name)


def load_reference(path: str) -> types.SimpleNamespace:
    """Import the reference's seeder, ELB, TCAM losses, box metrics and metadata loader from a checkout."""
    root = Path(path)
    if not (root / "dlib" / "cams" / "tcam_seeding.py").is_file():
        pytest.fail(f"TEDLOC_TCAM_REF={path} is not a tcam-wsol-video checkout (no dlib/cams/tcam_seeding.py)")
    pytest.importorskip("skimage", reason="the reference needs scikit-image (pip install scikit-image)")
    saved = {"path": list(sys.path), "modules": set(sys.modules), "np.float": np.__dict__.get("float")}

    def put(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module

    stubs = {"kornia": {"kornia.morphology": {"dilation": _not_installed, "erosion": _not_installed}},
             "pynvml": {"pynvml.smi": {"nvidia_smi": None}},
             "munch": {"munch": {"Munch": _Munch}}}
    for top, modules in stubs.items():
        if top in sys.modules or importlib.util.find_spec(top) is not None:
            continue
        put(top)
        for name, attrs in modules.items():
            if name == top:
                sys.modules[top].__dict__.update(attrs)
            else:
                put(name, **attrs)
    for name in _EMPTY_PACKAGES:
        put(name, __path__=[str(root.joinpath(*name.split(".")))])
    put("dlib.crf.dense_crf_loss", DenseCRFLoss=None)
    put("dlib.crf.color_dense_crf_loss", ColorDenseCRFLoss=None)
    sys.path.insert(0, str(root))
    np.float = float  # GetRoiSingleCam's single-label branch
    ref = types.SimpleNamespace(saved=saved)
    ref.constants = importlib.import_module("dlib.configure.constants")
    ref.seeding = importlib.import_module("dlib.cams.tcam_seeding")
    ref.elb = importlib.import_module("dlib.losses.elb")
    ref.elb.torch = _CpuTorch()
    ref.tcam = importlib.import_module("dlib.losses.tcam")
    ref.metrics = importlib.import_module("dlib.metrics.wsol_metrics")
    ref.loader = importlib.import_module("dlib.datasets.wsol_loader")
    return ref


def unload_reference(ref: types.SimpleNamespace) -> None:
    for name in set(sys.modules) - ref.saved["modules"]:
        if name.split(".")[0] in ("dlib", "kornia", "pynvml", "munch"):
            del sys.modules[name]
    sys.path[:] = ref.saved["path"]
    if ref.saved["np.float"] is None:
        np.__dict__.pop("float", None)


@pytest.fixture(scope="module")
def ref():
    reference = load_reference(REF)
    yield reference
    unload_reference(reference)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    m = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma)
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def _maps(count: int, seed: int) -> list[np.ndarray]:
    """Seeded random smooth maps of several sizes and blob scales (many 4-connected blobs above Otsu's cut)."""
    rng = np.random.default_rng(seed)
    kinds = [((64, 64), 2.0), ((48, 80), 4.0), ((96, 96), 3.0), ((224, 224), 8.0)]
    return [_smooth(rng, *kinds[k % len(kinds)]) for k in range(count)]


# ------------------------------------------------------------------------------------------------ ROI
@pytest.mark.parametrize("min_area", [0.05, 0.2])
def test_roi_equals_the_reference(ref, min_area):
    from tedloc.pseudolabels.otsu_seeds import region_of_interest

    c = ref.constants
    differs = fallback = 0
    for cam in _maps(24, seed=0):
        theirs = {method: ref.seeding.GetRoiSingleCam(method, min_area)(torch.from_numpy(cam))[0].numpy()
                  for method in (c.ROI_ALL, c.ROI_H_DENSITY)}
        ours = {c.ROI_ALL: region_of_interest(cam, "all", min_area),
                c.ROI_H_DENSITY: region_of_interest(cam, "densest", min_area)}
        for method, roi in theirs.items():
            assert set(np.unique(roi).tolist()) <= {0, 1}
            assert np.array_equal(ours[method], roi == 1), method
        differs += not np.array_equal(ours[c.ROI_ALL], ours[c.ROI_H_DENSITY])
        fallback += not np.array_equal(ours[c.ROI_H_DENSITY], region_of_interest(cam, "densest", 1e-6))
    print(f"min_area {min_area}: densest != all on {differs}/24 maps, the area rule chose on {fallback}")
    assert differs >= 20 and fallback >= 1  # non-degenerate: several components, the area rule used


# ------------------------------------------------------------------------------------------------ pools
def _reference_pools(ref, cam, roi_method, min_area, fg_pool, bg_pool):
    """The reference's FG and BG candidates: drawing as many seeds as pixels, without replacement, takes them all."""
    h, w = cam.shape
    one = ref.seeding._OneSample(min_p=bg_pool, max_p=fg_pool, min_=h * w, max_=h * w,
                                 seed_tech=ref.constants.SEED_WEIGHTED, roi_method=roi_method,
                                 p_min_area_roi=min_area, use_roi=True)
    fg, bg = one(cam=torch.from_numpy(cam), erode=lambda x: x)
    return fg.numpy() == 1, bg.numpy() == 1


def _our_pools(cam, roi, min_area, fg_pool, bg_pool):
    from tedloc.pseudolabels.otsu_seeds import OtsuSeederConfig, sample_otsu_seeds

    h, w = cam.shape
    x, u = torch.from_numpy(cam)[None], torch.rand(1, h * w, generator=torch.Generator().manual_seed(0))
    common = {"fg_pool": fg_pool, "bg_pool": bg_pool, "roi": roi, "min_roi_area": min_area, "dilation": 1}
    fg = sample_otsu_seeds(x, u, u, OtsuSeederConfig(fg_count=h * w, bg_count=0, **common))[0]
    bg = sample_otsu_seeds(x, u, u, OtsuSeederConfig(fg_count=0, bg_count=h * w, **common))[0]
    return (fg == 1).numpy(), (bg == 0).numpy()


@pytest.mark.parametrize("fg_pool,bg_pool", [(0.6, 0.1), (0.5, 0.3), (0.7, 0.1)])
def test_pools_equal_the_reference(ref, fg_pool, bg_pool):
    c = ref.constants
    crafted = np.zeros((20, 20), np.float32)  # an ROI of 90 pixels: 0.7 * 90 is 63 in float32, 62.99... in float64
    crafted[3:12, 4:14] = 0.9
    crafted[5:8, 6:9] = 1.0
    maps = _maps(7, seed=1) + [crafted, np.full((16, 16), 0.3, np.float32)]  # one of them 224x224
    for k, cam in enumerate(maps):
        for roi_method, roi in ((c.ROI_ALL, "all"), (c.ROI_H_DENSITY, "densest")):
            theirs = _reference_pools(ref, cam, roi_method, 0.05, fg_pool, bg_pool)
            ours = _our_pools(cam, roi, 0.05, fg_pool, bg_pool)
            assert np.array_equal(ours[0], theirs[0]), (k, roi, "FG", int(ours[0].sum()), int(theirs[0].sum()))
            assert np.array_equal(ours[1], theirs[1]), (k, roi, "BG", int(ours[1].sum()), int(theirs[1].sum()))
            if k < len(maps) - 1:
                assert ours[0].any() and ours[1].any()
            else:
                assert not ours[0].any() and not ours[1].any()  # a constant map: no seed in either


def test_fg_draw_distribution_matches_the_reference(ref):
    """One weighted FG seed, 2,000 times: the reference's multinomial (torch's seeded global generator) and
    tedloc's keyed uniforms both pick the pool's pixels in proportion to S (a chi-square statistic within six
    standard deviations of its mean, for each)."""
    from tedloc.pseudolabels.otsu_seeds import OtsuSeederConfig, sample_otsu_seeds

    cam = _smooth(np.random.default_rng(4), (12, 12), 2.0)
    n, (h, w) = 2000, cam.shape
    one = ref.seeding._OneSample(min_p=0.1, max_p=0.6, min_=1, max_=1, seed_tech=ref.constants.SEED_WEIGHTED,
                                 roi_method=ref.constants.ROI_ALL, p_min_area_roi=0.05, use_roi=True)
    theirs = np.zeros(h * w)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.from_numpy(cam)
        for _ in range(n):
            theirs += one(cam=x, erode=lambda r: r)[0].numpy().ravel()
    maps = torch.from_numpy(cam)[None].expand(n, h, w).contiguous()
    u = torch.from_numpy(np.random.default_rng(5).random((n, h * w)))
    labels = sample_otsu_seeds(maps, u, u, OtsuSeederConfig(bg_count=0, roi="all", dilation=1))
    ours = (labels == 1).reshape(n, -1).sum(dim=0).numpy()
    assert theirs.sum() == n and ours.sum() == n
    pool = _our_pools(cam, "all", 0.05, 0.6, 0.1)[0].ravel()
    assert not ours[~pool].any() and not theirs[~pool].any()
    expected = n * cam.ravel()[pool] / cam.ravel()[pool].sum()
    dof = pool.sum() - 1
    assert dof >= 20
    for counts in (theirs, ours):
        chi2 = float(((counts[pool] - expected) ** 2 / expected).sum())
        assert chi2 < dof + 6 * np.sqrt(2 * dof), (chi2, dof)


# ------------------------------------------------------------------------------------------------ ELB / size loss
def _elb(ref, **kwargs):
    return ref.elb.ELB(**{"init_t": 1.0, "max_t": 10.0, "mulcoef": 1.01, **kwargs})


def _barrier_inputs(t: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bound = torch.tensor([-1.0 / t ** 2], dtype=torch.float32)
    return [
        -torch.rand(32, generator=g) * 224 * 224,  # minus region sizes of 224x224 maps
        -torch.rand(32, generator=g) * 3,  # small sizes, both branches for t > 1
        torch.linspace(-3, 0.5, 71),  # across the bound, into z > 0
        torch.cat([bound, torch.nextafter(bound, torch.zeros(1)), torch.nextafter(bound, -torch.ones(1))]),
    ]


@pytest.mark.parametrize("t", [1.0, 1.5, 10.0])
def test_elb_equals_log_barrier(ref, t):
    from tedloc.models.size_loss import log_barrier

    elb = _elb(ref)
    elb.set_t(t)
    for fx in _barrier_inputs(t):
        theirs, ours = elb(fx).item(), log_barrier(fx, t).mean().item()
        assert abs(ours - theirs) <= 1e-6 * max(1.0, abs(theirs)), (t, ours, theirs)


def test_t_schedule_equals_update_t(ref):
    from tedloc.models.size_loss import LogBarrierSchedule, log_barrier

    elb, schedule = _elb(ref), LogBarrierSchedule()
    fx = _barrier_inputs(1.0)[0]
    for n in range(300):  # past the cap (10) at 232 updates
        assert float(elb.get_t()) == schedule.t(n), n
        if n in (0, 1, 50, 100, 231, 232, 299):
            assert abs(log_barrier(fx, schedule.t(n)).mean().item() - elb(fx).item()) <= 1e-6 * 11
        elb.update_t()
    other, theirs = LogBarrierSchedule(init_t=2.0, factor=1.1, max_t=5.0), _elb(ref, init_t=2.0, max_t=5.0, mulcoef=1.1)
    for n in range(20):
        assert float(theirs.get_t()) == other.t(n), n
        theirs.update_t()


@pytest.mark.parametrize("t", [1.0, 2.7048, 10.0])
def test_size_loss_equals_max_size_positive_tcams(ref, t):
    from tedloc.models.size_loss import absolute_size_loss

    elb = _elb(ref)
    elb.set_t(t)
    loss = ref.tcam.MaxSizePositiveTcams(cuda_id="cpu", lambda_=1.0, elb=elb)
    g = torch.Generator().manual_seed(1)
    for logits in (torch.randn(4, 2, 28, 28, generator=g) * 3, torch.randn(2, 2, 224, 224, generator=g),
                   torch.stack([torch.full((1, 8, 8), -9.0), torch.full((1, 8, 8), 9.0)], dim=1)):
        theirs = loss(epoch=0, fcams=logits).item()
        ours = absolute_size_loss(torch.softmax(logits, dim=1), t).item()
        assert abs(ours - theirs) <= 1e-6 * max(1.0, abs(theirs)), (t, ours, theirs)


# ------------------------------------------------------------------------------------------------ CorLoc
_FRAME_SIZES = [(320, 240), (480, 360), (1280, 720), (450, 360), (1916, 1080)]


def _frame(rng: np.random.Generator):
    """A 224x224 map of 1-3 Gaussian blobs over smooth noise, a frame size, and GT boxes (in the frame's pixels)
    around some of the blobs, jittered, sometimes with a box elsewhere."""
    yy, xx = np.mgrid[0:224, 0:224]
    cam = cv2.GaussianBlur(rng.random((224, 224)), (0, 0), 6) * 0.3
    blobs = []
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(20, 204, 2)
        sx, sy = rng.uniform(8, 50, 2)
        cam += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 / (2 * sx ** 2) + (yy - cy) ** 2 / (2 * sy ** 2)))
        blobs.append((cx, cy, sx, sy))
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    w, h = _FRAME_SIZES[int(rng.integers(len(_FRAME_SIZES)))]
    boxes = []
    for cx, cy, sx, sy in blobs[:int(rng.integers(1, len(blobs) + 1))]:
        k = rng.uniform(1.2, 2.5)
        b = np.clip(np.array([cx - k * sx, cy - k * sy, cx + k * sx, cy + k * sy]) + rng.normal(0, 6, 4), 0, 223)
        b = b * np.array([w, h, w, h]) / 224
        boxes.append(np.sort(b.reshape(2, 2), axis=0).ravel().astype(int))
    if rng.random() < 0.3:
        x0, y0 = rng.uniform(0, 0.7 * w), rng.uniform(0, 0.7 * h)
        boxes.append(np.array([x0, y0, x0 + 0.2 * w, y0 + 0.2 * h]).astype(int))
    return cam, (w, h), np.array(boxes)


def test_per_class_corloc_equals_the_reference(ref, tmp_path):
    from tedloc.data.dataset import Split
    from tedloc.data.wsol_format import write_split_metadata
    from tedloc.eval.corloc import CorLocAccumulator
    from tedloc.eval.scoremaps import threshold_list

    rng = np.random.default_rng(0)
    classes, per_class = 4, 12
    frames = [_frame(rng) for _ in range(classes * per_class)]
    labels = [k // per_class for k in range(len(frames))]
    ids = [f"c{label}/video-000/shot-000/frame{k:04d}.jpg" for k, label in enumerate(labels)]
    split = Split("test", ids, labels, [f[1] for f in frames], [f[2] for f in frames])
    thresholds = threshold_list(0.004)
    names = [f"class{c}" for c in range(classes)]
    ours = CorLocAccumulator(split, thresholds, names)
    for k, (cam, _, _) in enumerate(frames):
        ours.accumulate(ids[k], cam)
    result = ours.compute()

    def reference(rows: list[int], name: str):
        write_split_metadata(split.subset(rows), tmp_path / name)
        evaluator = ref.metrics.BoxEvaluator(
            metadata=ref.loader.configure_metadata(str(tmp_path / name)), dataset_name="YouTube-Objects-v1.0",
            split="test", cam_threshold_list=list(thresholds), iou_threshold_list=[50], mask_root=None,
            multi_contour_eval=False, args=None)
        for k in rows:
            evaluator.accumulate(frames[k][0], ids[k], labels[k], np.array([labels[k]]), None, None)
        best = evaluator.compute()[0]
        return best, evaluator.best_tau_list[0], evaluator.num_correct[50], evaluator.curve_s[50]

    theirs = {}
    for c in range(classes):
        rows = [k for k in range(len(frames)) if labels[k] == c]
        best, tau, correct, curve = reference(rows, names[c])
        theirs[names[c]] = best
        assert np.array_equal(ours.hits[rows].sum(axis=0), correct)  # correct frames at every threshold
        np.testing.assert_allclose(ours.box_accuracy()[c], curve, rtol=1e-12)
        assert result["CorLoc_per_class"][names[c]] == pytest.approx(best, rel=1e-12)
        assert result["CorLoc_thresholds"][names[c]] == tau
    assert result["CorLoc"] == pytest.approx(np.mean(list(theirs.values())), rel=1e-12)
    assert min(theirs.values()) < 100 and len(set(theirs.values())) > 1  # non-degenerate
    assert len(set(result["CorLoc_thresholds"].values())) > 1
    best, tau, _, _ = reference(list(range(len(frames))), "all")  # the pooled threshold (the val protocol)
    assert ours.pooled_threshold() == pytest.approx((tau, best), rel=1e-12)
