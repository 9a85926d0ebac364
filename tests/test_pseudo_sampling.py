"""Pseudo-label sampling: Otsu split, pools, balance, exclusion, determinism, degenerate maps."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tedloc.pseudolabels import PseudoLabelSampler, SamplerConfig, candidate_pools, otsu_levels


def _maps(b=4, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 1, 4, 4, generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def test_otsu_matches_opencv():
    rng = np.random.default_rng(0)
    for _ in range(20):
        u8 = np.concatenate([rng.normal(60, 15, 300), rng.normal(180, 20, 200)]).clip(0, 255).astype(np.uint8)
        ours = int(otsu_levels(torch.from_numpy(u8.astype(np.int64))[None])[0])
        ref, _ = cv2.threshold(u8[None], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert ours == int(ref)


def test_pools_are_top_inside_and_bottom_outside():
    maps = _maps()
    fg, bg, region, ok = candidate_pools(maps, 0.2, 0.2)
    assert ok.all()
    flat = maps.reshape(4, -1)
    for i in range(4):
        assert not (fg[i] & ~region[i]).any() and not (bg[i] & region[i]).any()
        assert fg[i].sum() == int(np.ceil(region[i].sum().item() * 0.2))
        assert bg[i].sum() == int(np.ceil((~region[i]).sum().item() * 0.2))
        # every FG candidate scores at least as high as any non-candidate in the region (quantised)
        q = (flat[i] - flat[i].min()) / (flat[i].max() - flat[i].min())
        lv = (q.double() * 255).floor()
        assert lv[fg[i]].min() >= lv[region[i] & ~fg[i]].max()
        assert lv[bg[i]].max() <= lv[~region[i] & ~bg[i]].min()


def test_samples_are_balanced_in_pools_and_fresh_each_step():
    maps = _maps()
    sampler = PseudoLabelSampler(SamplerConfig(k=10))
    fg_pool, bg_pool = sampler.pools(maps)
    g = torch.Generator().manual_seed(1)
    a = sampler(maps, g)
    b = sampler(maps, g)
    assert a.fg.shape == a.bg.shape == a.valid.shape == (4, 10) and a.valid.all()
    for lab in (a, b):
        assert torch.gather(fg_pool, 1, lab.fg).all() and torch.gather(bg_pool, 1, lab.bg).all()
        for i in range(4):
            assert len(set(lab.fg[i].tolist())) == 10 and len(set(lab.bg[i].tolist())) == 10  # no repeats
    assert not torch.equal(a.fg, b.fg)  # resampled every step
    again = sampler(maps, torch.Generator().manual_seed(1))
    assert torch.equal(again.fg, a.fg) and torch.equal(again.bg, a.bg)  # deterministic under a seed


def test_small_pools_stay_balanced():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = 1.0  # one hot pixel: FG pool of 1
    lab = PseudoLabelSampler(SamplerConfig(k=5))(m, torch.Generator().manual_seed(0))
    assert lab.valid.sum() == 1 and lab.fg[0, 0] == 0
    assert lab.valid.shape == (1, 5)


def test_degenerate_maps_give_no_labels():
    maps = torch.stack([torch.zeros(8, 8), torch.full((8, 8), 3.0), torch.rand(8, 8), torch.rand(8, 8)])
    maps[3, 2, 2] = float("nan")
    lab = PseudoLabelSampler()(maps, torch.Generator().manual_seed(0))
    assert lab.valid[:2].sum() == 0 and lab.valid[3].sum() == 0 and lab.valid[2].any()
    assert lab.empty == 3


def test_weighted_sampling_prefers_high_values():
    m = torch.zeros(1, 1, 100)
    m[0, 0, :50] = torch.linspace(0.01, 1, 50)  # FG pool is the top of these
    sampler = PseudoLabelSampler(SamplerConfig(k=1, fg_pool=1.0, fg_weighting="weighted"))
    g = torch.Generator().manual_seed(0)
    picks = torch.cat([sampler(m, g).fg[:, 0] for _ in range(400)])
    fg_pool, _ = sampler.pools(m)
    pool = torch.nonzero(fg_pool[0]).flatten()
    assert torch.isin(picks, pool).all()
    hi = picks >= pool[len(pool) // 2]
    assert hi.float().mean() > 0.55  # the upper half of the pool is drawn more often


def test_config_validation():
    with pytest.raises(ValueError):
        SamplerConfig(k=0)
    with pytest.raises(ValueError):
        SamplerConfig(fg_pool=0)


def test_maps_follow_the_crop_and_flip_onto_the_grid():
    from tedloc.data.transforms import View
    from tedloc.pseudolabels import maps_on_grid

    m = torch.zeros(8, 8)
    m[:, :2] = 1.0  # the left quarter of the image is hot
    plain = View((100, 100), (64, 64), (0, 0, 64, 64), False).to_tensor()
    flipped = View((100, 100), (64, 64), (0, 0, 64, 64), True).to_tensor()
    out = maps_on_grid(torch.stack([m, m]), torch.stack([plain, flipped]), (16, 16))
    assert out.shape == (2, 16, 16)
    assert out[0, :, :3].min() > 0.9 and out[0, :, 8:].max() < 1e-6  # left stays left
    assert out[1, :, -3:].min() > 0.9 and out[1, :, :8].max() < 1e-6  # flipped: right
    cropped = View((100, 100), (80, 80), (40, 0, 40, 80), False).to_tensor()  # the right half only
    assert maps_on_grid(m[None], cropped[None], (8, 8)).max() < 1e-6


def test_border_prior_takes_the_outer_ring_as_background():
    maps = _maps(b=6, seed=3)
    fg, bg, region, ok = candidate_pools(maps, 1.0, 0.5, bg_border=0.125)
    ring = torch.ones(16, 16, dtype=torch.bool)
    ring[2:-2, 2:-2] = False  # 0.125 of 16 cells: two rows and columns on each side
    ring = ring.flatten()
    assert ok.all() and not (region & ring).any() and torch.equal(fg, region)
    for i in range(6):
        flat = maps[i].flatten()
        lv = (((flat - flat.min()) / (flat.max() - flat.min())).double() * 255).floor()
        # Otsu's split of the map with the ring below everything else (0; the rest 25..255), as OpenCV finds it
        shifted = torch.where(ring, torch.zeros_like(lv), (25.5 + 0.9 * lv).floor()).numpy().astype(np.uint8)
        t, _ = cv2.threshold(shifted[None], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert torch.equal(region[i], torch.from_numpy(shifted > t))
        assert not (bg[i] & ~ring).any() and bg[i].sum() == int(np.ceil(ring.sum().item() * 0.5))
        assert lv[bg[i]].max() <= lv[ring & ~bg[i]].min()  # the lowest of the ring
    with pytest.raises(Exception, match="bg_border"):
        SamplerConfig(bg_border=0.5)
    labels = PseudoLabelSampler(SamplerConfig(k=5, bg_border=0.125))(maps, torch.Generator().manual_seed(0))
    assert labels.valid.all() and ring[labels.bg].all() and not ring[labels.fg].any()


def test_the_ring_leaves_an_inside_on_any_grid():
    from tedloc.pseudolabels.sampling import border_ring

    for h, w, share in ((2, 2, 0.125), (4, 4, 0.45), (10, 10, 0.49), (14, 3, 0.49), (3, 3, 0.3), (1, 5, 0.2)):
        ring = border_ring(h, w, share).view(h, w)
        assert ring[0].all() or h == 1  # at least one cell wide
        assert not ring.all() or h < 3 or w < 3, (h, w, share)
    assert border_ring(16, 16, 0.125).view(16, 16)[2:-2, 2:-2].sum() == 0 and border_ring(16, 16, 0.125).sum() == 112
