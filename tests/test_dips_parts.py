"""DiPS's building blocks: ViT attention maps, proposals from attention, the dense CRF loss."""
from __future__ import annotations

import os

import numpy as np
import pytest
import timm
import torch

from tedloc.errors import TedlocError
from tedloc.models.dense_crf_loss import bilateral_filter, dense_crf_loss
from tedloc.models.vit_attention import cls_attention_maps, last_block_attention
from tedloc.pseudolabels.proposals import Proposal, attention_map_set, image_proposals, map_proposals, otsu_cut_u8
from tedloc.pseudolabels.sampling import otsu_levels
from runtimes import CPU


# ----------------------------------------------------------------------------- attention maps
@pytest.mark.parametrize("name,kwargs,size", [
    ("vit_small_patch16_224", {"img_size": 224}, (224, 224)),  # DiPS's DINO ViT-S/16 architecture
    ("vit_tiny_patch16_224", {"img_size": 64, "reg_tokens": 2, "dynamic_img_size": True}, (48, 80)),
])
def test_attention_equals_timms_own_softmax(name, kwargs, size):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()
    images = torch.randn(2, 3, *size)
    attn = model.blocks[-1].attn
    attn.fused_attn = False  # timm's explicit path: softmax(q k^T * scale), seen by attn_drop
    seen = {}
    handle = attn.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("w", o))
    with torch.no_grad():
        model.forward_features(images)
    handle.remove()
    attn.fused_attn = True
    weights = last_block_attention(model, images)
    torch.testing.assert_close(weights, seen["w"], atol=1e-6, rtol=1e-5)
    maps = cls_attention_maps(model, images)
    gh, gw = size[0] // 16, size[1] // 16
    prefix = model.num_prefix_tokens
    assert maps.shape == (2, attn.num_heads, gh, gw)
    torch.testing.assert_close(maps, seen["w"][:, :, 0, prefix:].reshape(2, -1, gh, gw))


def test_attention_maps_need_a_vit_with_a_class_token():
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=0)
    with pytest.raises(TedlocError, match="a CNN has no attention"):
        cls_attention_maps(cnn, torch.zeros(1, 3, 32, 32))
    pooled = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, class_token=False,
                               global_pool="avg", img_size=32)
    with pytest.raises(TedlocError, match="no class token"):
        cls_attention_maps(pooled, torch.zeros(1, 3, 32, 32))


# ----------------------------------------------------------------------------- proposals
def test_map_set_is_the_mean_then_heads_each_over_its_max():
    maps = torch.zeros(1, 6, 2, 2)
    maps[0, :, 0, 0] = torch.arange(1.0, 7.0)
    maps[0, 2] = 0  # a head with nothing: zeros, no NaN
    out = attention_map_set(maps)
    assert out.shape == (1, 5, 2, 2)
    assert out[0, 0, 0, 0] == 1 and out[0, 1, 0, 0] == 1 and torch.all(out[0, 3] == 0)
    with pytest.raises(ValueError):
        attention_map_set(maps, heads=(0, 7))


def test_otsu_cut_is_clamped_and_constant_maps_have_none():
    assert otsu_cut_u8(np.full(10, 7)) is None
    assert otsu_levels(torch.tensor([[0, 0, 0, 200]]))[0] == 0 and otsu_cut_u8(np.array([0, 0, 0, 200])) == 1
    # Otsu's 0 is clamped to 1: a pixel at level 1 is then not foreground
    assert otsu_cut_u8(np.array([254, 255, 255])) == 254
    assert otsu_cut_u8(np.array([10] * 50 + [200] * 50)) in range(10, 200)


def test_proposals_are_the_boxes_of_the_regions_above_otsu():
    m = np.zeros((20, 30))
    m[2:6, 3:9] = 1.0  # 24 px
    m[10:18, 12:28] = 0.9  # 128 px, a second region
    m[0, 29] = 0.95  # one pixel
    found = map_proposals(m, min_size=0.0, map_index=2)
    assert sorted(p.box for p in found) == [(3, 2, 8, 5), (12, 10, 27, 17), (29, 0, 29, 0)]
    assert all(p.map_index == 2 for p in found)
    # the minimum size (a share of the map's area) drops the small ones
    assert [p.box for p in map_proposals(m, min_size=0.1)] == [(12, 10, 27, 17)]
    # none large enough: the largest is kept
    assert [p.box for p in map_proposals(m, min_size=0.5)] == [(12, 10, 27, 17)]
    assert map_proposals(np.full((5, 5), 0.3), 0.0) == []  # constant: nothing
    assert Proposal((0, 0, 1, 2), 0).area == 6


def test_the_minimum_size_applies_to_the_pool_of_all_maps():
    maps = torch.zeros(2, 10, 10)
    maps[0, 1, 1] = 1  # map 0: one small speck
    maps[1, 4:9, 4:9] = 1  # map 1: a large region
    props = image_proposals(maps, (10, 10), min_size=0.1)
    assert [(p.box, p.map_index) for p in props] == [((4, 4, 8, 8), 1)]  # the speck of map 0 does not survive
    only_specks = torch.zeros(2, 10, 10)
    only_specks[0, 1, 1], only_specks[1, 7:9, 7:9] = 1, 1
    assert [p.box for p in image_proposals(only_specks, (10, 10), min_size=0.5)] == [(7, 7, 8, 8)]  # the largest


def test_attention_of_other_formulas_is_refused():
    for name in ("beit_base_patch16_224", "eva02_tiny_patch14_224"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
        with pytest.raises(TedlocError, match="not timm's plain Attention"):
            cls_attention_maps(model, torch.zeros(1, 3, 224, 224))


def test_image_proposals_pool_every_map_at_the_image_size():
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0] = 1  # top-left quarter... of a 4x4 grid
    maps[1, 3, 3] = 1
    props = image_proposals(maps, (40, 40), min_size=0.0)
    assert {p.map_index for p in props} == {0, 1}
    top_left = [p for p in props if p.map_index == 0][0].box
    assert top_left[0] == 0 and top_left[1] == 0 and top_left[2] < 20 and top_left[3] < 20


# ----------------------------------------------------------------------------- dense CRF loss
def _brute_force(probs: np.ndarray, images: np.ndarray, sigma_rgb: float, sigma_xy: float) -> float:
    b, k, h, w = probs.shape
    total = 0.0
    for n in range(b):
        pix = [(y, x) for y in range(h) for x in range(w)]
        for i, (yi, xi) in enumerate(pix):
            for j, (yj, xj) in enumerate(pix):
                d_xy = ((yi - yj) ** 2 + (xi - xj) ** 2) / sigma_xy ** 2
                d_rgb = ((images[n, :, yi, xi] - images[n, :, yj, xj]) ** 2).sum() / sigma_rgb ** 2
                weight = np.exp(-0.5 * (d_xy + d_rgb))
                total -= weight * (probs[n, :, yi, xi] * probs[n, :, yj, xj]).sum()
    return total / b


def test_dense_crf_loss_equals_its_definition_and_its_gradient_is_minus_two_w_s():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 5, 6)).astype(np.float64)
    logits = torch.tensor(rng.normal(size=(2, 2, 5, 6)), requires_grad=True)
    probs = logits.softmax(dim=1)
    loss = dense_crf_loss(probs, torch.from_numpy(images), sigma_rgb=40.0, sigma_xy=3.0)
    assert loss.item() == pytest.approx(_brute_force(probs.detach().numpy(), images, 40.0, 3.0), rel=1e-5)
    # the gradient w.r.t. the segmentations: -2 W S / B
    p = probs.detach().float().requires_grad_(True)
    dense_crf_loss(p, torch.from_numpy(images), 40.0, 3.0).backward()
    expected = -2 * bilateral_filter(torch.from_numpy(images), p.detach(), 40.0, 3.0) / 2
    torch.testing.assert_close(p.grad, expected)
    # and it trains: a finite gradient reaches the logits
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_dense_crf_loss_stays_float32_under_autocast():
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 12, 12)).astype(np.float32))
    probs = torch.rand(2, 2, 12, 12).softmax(dim=1)
    exact = dense_crf_loss(probs, images, 15, 100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = dense_crf_loss(probs, images, 15, 100)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, exact)


def test_dense_crf_loss_prefers_segmentations_that_follow_colour_edges():
    images = torch.zeros(1, 3, 8, 8)
    images[:, :, :, 4:] = 255  # two colour halves
    aligned = torch.zeros(1, 2, 8, 8)
    aligned[:, 0, :, :4], aligned[:, 1, :, 4:] = 1, 1
    across = torch.zeros(1, 2, 8, 8)
    across[:, 0, :4], across[:, 1, 4:] = 1, 1
    assert dense_crf_loss(aligned, images, 15, 10) < dense_crf_loss(across, images, 15, 10)


def test_dense_crf_loss_on_a_smaller_grid_and_blocks():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (1, 3, 16, 16)).astype(np.float32))
    probs = torch.rand(1, 2, 16, 16).softmax(dim=1)
    small = dense_crf_loss(probs, images, 15, 100, scale=0.5)
    direct = dense_crf_loss(torch.nn.functional.interpolate(probs, size=(8, 8), mode="bilinear"),
                            torch.nn.functional.interpolate(images, size=(8, 8), mode="area"), 15, 50)
    torch.testing.assert_close(small, direct)
    # the row blocks change nothing
    torch.testing.assert_close(bilateral_filter(images, probs, block=7), bilateral_filter(images, probs),
                               atol=1e-4, rtol=1e-4)  # float32 distances: |a|^2 + |b|^2 - 2ab per block
    with pytest.raises(ValueError, match="do not match"):
        dense_crf_loss(probs, images[:, :, :8], 15, 100)


@pytest.mark.skipif(not os.environ.get("DIPS_BILATERALFILTER"),
                    reason="DIPS_BILATERALFILTER: the folder of DiPS's built bilateralfilter (bench_dense_crf.py)")
def test_the_configs_crf_gain_gives_the_exact_loss_the_value_of_dips_lattice():
    """DiPS's permutohedral lattice (its C++ extension, built outside the project) against the exact loss times the
    shipped configs' ``crf_gain``, on smooth random images and segmentations at 64x64 (sigma_rgb 15, sigma_xy 100)."""
    import sys

    import torch.nn.functional as F

    from tedloc.utils.config_files import read_config_file

    sys.path.insert(0, os.environ["DIPS_BILATERALFILTER"])
    import bilateralfilter

    gain = read_config_file("cub_dips")["crf_gain"]
    assert gain == read_config_file("ilsvrc_dips")["crf_gain"]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        images = F.interpolate(torch.rand(1, 3, 6, 6, generator=generator) * 255, size=(64, 64), mode="bicubic",
                               align_corners=False).clamp(0, 255)
        probs = F.interpolate(torch.randn(1, 2, 6, 6, generator=generator), size=(64, 64), mode="bilinear",
                              align_corners=False).softmax(dim=1)
        out = np.zeros(probs.numel(), dtype=np.float32)
        bilateralfilter.bilateralfilter_batch(images.numpy().ravel().astype(np.float32),
                                              probs.numpy().ravel().astype(np.float32), out, 1, 2, 64, 64, 15.0, 100.0)
        lattice = -float((probs.numpy().ravel() * out).sum())
        assert lattice == pytest.approx(gain * dense_crf_loss(probs, images).item(), rel=0.15)


# ----------------------------------------------------------------------------- pixel pseudo-labels
def _scene():
    from tedloc.pseudolabels.pixel_seeds import box_masks

    maps = torch.linspace(0, 1, 100).reshape(1, 10, 10)
    boxes = torch.tensor([[[2, 2, 5, 5], [7, 7, 8, 8], [-1, -1, -1, -1]]])
    masks = box_masks(boxes, (10, 10))
    return maps, masks[:, 0], masks.any(dim=1)


def test_box_masks_are_inclusive_and_skip_empty_rows():
    _, chosen, union = _scene()
    assert chosen.sum() == 16 and chosen[0, 2, 2] and chosen[0, 5, 5] and not chosen[0, 6, 5]
    assert union.sum() == 20


def test_seeds_respect_the_box_the_pools_and_the_counts():
    from tedloc.pseudolabels.pixel_seeds import IGNORE, DiPSSamplerConfig, sample_pixel_labels

    maps, chosen, union = _scene()
    g = torch.Generator().manual_seed(0)
    cfg = DiPSSamplerConfig(fg_count=3, bg_count=5, fg_pool=0.5, bg_pool=0.3, dilation=1)
    for _ in range(20):
        labels = sample_pixel_labels(maps, chosen, union, torch.rand(1, 100, generator=g),
                                     torch.rand(1, 100, generator=g), cfg)[0]
        fg, bg = labels == 1, labels == 0
        assert fg.sum() == 3 and bg.sum() == 5 and (labels == IGNORE).sum() == 92
        assert torch.all(chosen[0][fg])  # inside the chosen box
        assert maps[0][fg].min() >= maps[0][chosen[0]].sort().values[8]  # among the box's top half
        assert not torch.any(union[0][bg])  # outside every box
        outside = maps[0][~union[0]].sort().values
        assert maps[0][bg].max() <= outside[int(0.3 * len(outside)) - 1]  # among the lowest 30 % outside
    # the code's variant: background from the bottom of the whole map, boxes included
    low = maps.clone()
    low[0, 7:9, 7:9] = -1.0  # the other box holds the lowest values
    anywhere = DiPSSamplerConfig(fg_count=1, bg_count=4, bg_pool=0.04, dilation=1, background="anywhere")
    labels = sample_pixel_labels(low, chosen, union, torch.rand(1, 100, generator=g), torch.rand(1, 100, generator=g),
                                 anywhere)[0]
    assert torch.all(union[0][labels == 0]) and (labels == 0).sum() == 4


def test_background_when_the_boxes_cover_the_view_and_an_empty_batch():
    from tedloc.pseudolabels.pixel_seeds import DiPSSamplerConfig, sample_pixel_labels

    maps = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    everywhere = torch.ones(1, 8, 8, dtype=torch.bool)
    u = torch.rand(1, 64, generator=torch.Generator().manual_seed(0))
    labels = sample_pixel_labels(maps, everywhere, everywhere, u, u, DiPSSamplerConfig(4, 4, 0.5, 0.25, dilation=1))
    assert (labels == 0).sum() == 4 and maps[labels == 0].max() < maps.flatten().sort().values[16]
    assert sample_pixel_labels(maps[:0], everywhere[:0], everywhere[:0], u[:0], u[:0]).shape == (0, 8, 8)


def test_foreground_is_drawn_in_proportion_to_the_activation():
    from tedloc.pseudolabels.pixel_seeds import DiPSSamplerConfig, sample_pixel_labels

    maps = torch.zeros(4000, 1, 2)
    maps[:, 0, 0], maps[:, 0, 1] = 0.75, 0.25
    chosen = torch.ones(4000, 1, 2, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    cfg = DiPSSamplerConfig(fg_count=1, bg_count=0, fg_pool=1.0, dilation=1)
    u_fg, u_bg = torch.rand(4000, 2, generator=g), torch.rand(4000, 2, generator=g)
    labels = sample_pixel_labels(maps, chosen, chosen, u_fg, u_bg, cfg)
    share = (labels[:, 0, 0] == 1).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.03)


def test_dilation_and_conflicts():
    from tedloc.pseudolabels.pixel_seeds import IGNORE, DiPSSamplerConfig, sample_pixel_labels

    maps = torch.full((1, 7, 7), 0.5)
    maps[0, 3, 2] = 1.0  # the chosen box is this one pixel: the foreground seed
    maps[0, 3, 4] = 0.0  # the lowest pixel outside the box: the background seed (pool of one)
    chosen = torch.zeros(1, 7, 7, dtype=torch.bool)
    chosen[0, 3, 2] = True
    u = torch.full((1, 49), 0.5)
    labels = sample_pixel_labels(maps, chosen, chosen, u, u, DiPSSamplerConfig(1, 1, 1.0, 0.01, dilation=3))[0]
    assert torch.all(labels[2:5, 1:3] == 1)  # the foreground seed grown to 3x3 ...
    assert torch.all(labels[2:5, 3] == IGNORE)  # ... where it meets the grown background seed: unset
    assert torch.all(labels[2:5, 4:6] == 0)
    assert (labels == 1).sum() == 6 and (labels == 0).sum() == 6 and (labels == IGNORE).sum() == 37
    with pytest.raises(ValueError):
        DiPSSamplerConfig(dilation=2)


# ----------------------------------------------------------------------------- heads
def test_heads_have_the_thesis_size_and_shapes_for_vit_s16_at_224():
    from tedloc.models.dips import ClassTokenClassifier, LocalizationDecoder, class_tokens, patch_tokens

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
    decoder, classifier = LocalizationDecoder(384), ClassTokenClassifier(384, 200, n_blocks=4)
    n_decoder = sum(p.numel() for p in decoder.parameters())
    n_heads = n_decoder + sum(p.numel() for p in classifier.parameters())
    assert n_decoder == 1_308_620 and n_heads == 1_616_020  # the thesis: "1.616 M params" for both heads
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = class_tokens(vit, images, n_blocks=4)
        assert tokens.shape == (2, 1536)
        torch.testing.assert_close(class_tokens(vit, images, n_blocks=1), vit.forward_features(images)[:, 0])
        assert classifier(tokens).shape == (2, 200)
        logits = decoder(patch_tokens(vit, images, (14, 14)))
    assert logits.shape == (2, 2, 224, 224) and logits.min() >= 0  # BN + ReLU end the last block too


def test_decoder_on_a_small_offline_encoder():
    from tedloc.models.dips import LocalizationDecoder, patch_tokens

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64).eval()
    with torch.no_grad():
        out = LocalizationDecoder(192)(patch_tokens(vit, torch.randn(3, 3, 64, 64), (4, 4)))
    assert out.shape == (3, 2, 64, 64)


# ----------------------------------------------------------------------------- the proposal cache
def test_top_k_keeps_the_best_scores_first():
    from tedloc.pseudolabels.proposal_cache import top_k

    props = [Proposal((i, i, i + 1, i + 1), i % 2) for i in range(5)]
    kept, scores = top_k(props, np.array([0.1, 0.9, 0.5, 0.9, 0.2]), 3)
    assert [p.box[0] for p in kept] == [1, 3, 2] and scores.tolist() == pytest.approx([0.9, 0.9, 0.5])


def test_proposal_cache_resumes_and_refuses_other_settings(tmp_path):
    from tedloc.pseudolabels.proposal_cache import ProposalCache

    ids = [f"img{i}" for i in range(4)]
    settings = {"encoder": "vit_small_patch16_224.dino", "heads": [0, 1, 2, 3], "min_size": 0.05}
    cache = ProposalCache(tmp_path / "p", ids, 2, settings)
    cache.write([0, 2], [[Proposal((1, 2, 3, 4), 0), Proposal((0, 0, 9, 9), 3)], []],
                [np.array([0.8, 0.4]), np.array([])])
    assert cache.missing().tolist() == [1, 3]
    with pytest.raises(TedlocError, match="not computed yet"):
        cache.get(1)
    del cache
    again = ProposalCache(tmp_path / "p", ids, 2, settings)  # resumes: the written rows are kept
    found, scores = again.get(0)
    assert found == [Proposal((1, 2, 3, 4), 0), Proposal((0, 0, 9, 9), 3)]
    assert scores.tolist() == pytest.approx([0.8, 0.4])
    assert again.get(2)[0] == [] and len(again.get(2)[1]) == 0  # an image without proposals
    again.write([1, 3], [[Proposal((5, 5, 6, 6), 1)], [Proposal((2, 2, 2, 2), 4)]],
                [np.array([0.3]), np.array([1.0])])
    assert again.complete
    del again
    with pytest.raises(TedlocError, match=r"other settings \(min_size: 0.05 here, 0.1 asked\)"):
        ProposalCache(tmp_path / "p", ids, 2, {**settings, "min_size": 0.1})
    with pytest.raises(TedlocError, match="other settings"):
        ProposalCache(tmp_path / "p", ids, 3, settings)
    with pytest.raises(TedlocError, match="other images"):
        ProposalCache(tmp_path / "p", ids[:3], 2, settings)
    with pytest.raises(ValueError, match="K must be at least 1"):
        ProposalCache(tmp_path / "zero", ids, 0, settings)
    with pytest.raises(TedlocError, match="k: 2 here, 3 asked"):
        ProposalCache(tmp_path / "p", k=3)
    with pytest.raises(ValueError, match="K=2"):
        ProposalCache(tmp_path / "p").write([0], [[Proposal((0, 0, 1, 1), 0)] * 3], [np.zeros(3)])


def test_proposals_of_a_split_scored_by_a_classifier(synthetic_small, tmp_path):
    from tedloc.pseudolabels.classifier_tools import ClassifierTools
    from tedloc.pseudolabels.proposal_scoring import compute_proposal_cache
    from tedloc.data import load_dataset
    from tedloc.data.preprocessing import Preprocessing
    from tedloc.methods import load_model
    from tedloc.methods.cam import PretrainConfig, pretrain
    from tedloc.pseudolabels.proposal_cache import ProposalCache

    pretrain(synthetic_small, tmp_path / "cnn", PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1,
                                                               batch_size=8, workers=0), runtime=CPU)
    tools = ClassifierTools(load_model(tmp_path / "cnn", runtime=CPU))
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=48).eval()
    split = load_dataset(synthetic_small)["val"]
    settings = {"encoder": "vit_tiny_patch16_224 (random)", "classifier": str(tmp_path / "cnn")}
    cache = compute_proposal_cache(vit, Preprocessing(48), tools, split, tmp_path / "props", settings, heads=(0, 2),
                                   k=3, min_size=0.02, batch_size=5)  # ViT-Ti has 3 heads
    assert cache.complete and len(cache) == len(split)
    for row in range(len(split)):
        found, scores = cache.get(row)
        w, h = (int(v) for v in split.sizes[row])
        assert 1 <= len(found) <= 3 and np.all(np.diff(scores) <= 0)  # best first
        assert all(0 <= p.box[0] <= p.box[2] < w and 0 <= p.box[1] <= p.box[3] < h for p in found)
        assert all(0 <= p.map_index < 3 for p in found) and np.all((scores >= 0) & (scores <= 1))
    # a finished cache is reused as it is; other settings are refused
    stamp = (tmp_path / "props" / "done.npy").stat().st_mtime_ns
    compute_proposal_cache(vit, Preprocessing(48), tools, split, tmp_path / "props", settings, heads=(0, 2), k=3,
                           min_size=0.02)
    assert (tmp_path / "props" / "done.npy").stat().st_mtime_ns == stamp
    with pytest.raises(TedlocError, match="min_size"):
        compute_proposal_cache(vit, Preprocessing(48), tools, split, tmp_path / "props", settings, heads=(0, 2), k=3,
                               min_size=0.5)
    assert isinstance(ProposalCache(tmp_path / "props"), ProposalCache)


def test_random_fourier_features_approximate_the_exact_filter():
    from tedloc.models.dense_crf_loss import bilateral_filter_rff

    torch.manual_seed(0)
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, :16] = torch.tensor([200.0, 30, 30])[None, :, None, None]
    images[:, :, 16:] = torch.tensor([30.0, 200, 60])[None, :, None, None]
    images = images + torch.randn_like(images) * 10
    probs = torch.rand(1, 2, 32, 32).softmax(dim=1)
    exact = bilateral_filter(images, probs, 15, 100)
    one = bilateral_filter_rff(images, probs, 15, 100, features=2048, seed=0)
    error = ((one - exact).abs() / exact).mean()
    assert error < 0.06
    # unbiased: the mean over independent feature draws gets closer
    mean = torch.stack([bilateral_filter_rff(images, probs, 15, 100, features=2048, seed=s) for s in range(8)]).mean(0)
    assert ((mean - exact).abs() / exact).mean() < 0.7 * error
    loss = dense_crf_loss(probs, images, 15, 100, method="rff", seed=3)
    assert loss.item() == pytest.approx(dense_crf_loss(probs, images, 15, 100).item(), rel=0.05)
    p = probs.clone().requires_grad_(True)
    dense_crf_loss(p, images, 15, 100, method="rff", seed=3).backward()
    torch.testing.assert_close(p.grad, -2 * bilateral_filter_rff(images, probs, 15, 100, seed=3) / 1)
    with pytest.raises(ValueError, match="exact, rff"):
        dense_crf_loss(probs, images, method="lattice")


def test_proposal_quality_against_gt(tmp_path):
    from tedloc.pseudolabels.proposal_scoring import proposal_quality
    from tedloc.data import Split
    from tedloc.pseudolabels.proposal_cache import ProposalCache

    split = Split("val", ["a.jpg", "b.jpg", "c.jpg"], [0, 0, 0], [[20, 20]] * 3,
                  [np.array([[0, 0, 9, 9]]), np.array([[10, 10, 19, 19], [0, 0, 4, 4]]), np.zeros((0, 4))])
    cache = ProposalCache(tmp_path / "p", split.image_ids, 2, {})
    cache.write([0, 1, 2], [[Proposal((0, 0, 4, 9), 0), Proposal((0, 0, 9, 9), 1)],  # top-1 IoU 0.5, best 1
                            [Proposal((10, 10, 19, 19), 0)],  # the second image's first GT box exactly
                            [Proposal((0, 0, 1, 1), 0)]],  # no GT: skipped
                [np.array([0.9, 0.1]), np.array([0.5]), np.array([0.5])])
    q = proposal_quality(cache, split)
    assert q["images"] == 2 and q["mIoU best"] == pytest.approx(100.0) and q["mIoU top-1"] == pytest.approx(75.0)
    assert q["best IoU>=50"] == 100 and q["top-1 IoU>=50"] == 100


def test_background_from_the_border_ring():
    """``background="border"`` (tedloc's boundary prior): BG seeds from the lowest of the outer ring only."""
    from tedloc.pseudolabels.pixel_seeds import DiPSSamplerConfig, sample_pixel_labels
    from tedloc.pseudolabels.sampling import border_ring

    maps, chosen, union = _scene()
    ring = border_ring(10, 10, 0.2).view(10, 10)  # two cells wide
    cfg = DiPSSamplerConfig(fg_count=3, bg_count=6, fg_pool=0.5, bg_pool=0.5, background="border", bg_border=0.2,
                            dilation=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        labels = sample_pixel_labels(maps, chosen, union, torch.rand(1, 100, generator=g),
                                     torch.rand(1, 100, generator=g), cfg)[0]
        bg = labels == 0
        assert bg.sum() == 6 and torch.all(ring[bg])
        assert maps[0][bg].max() <= maps[0][ring].sort().values[int(0.5 * ring.sum()) - 1]  # the ring's lowest half
        assert torch.all(chosen[0][labels == 1])
    with pytest.raises(ValueError, match="bg_border"):
        DiPSSamplerConfig(background="border", bg_border=0.5)
