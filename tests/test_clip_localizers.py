"""CLIP-ES and the training-free CLIP localizers, with random open_clip weights (no CLIP weights exist here).

A tiny open_clip config (``tedloc-tiny-clip``: 8-pixel patches, 3 blocks) is registered for speed;
one test runs the real ViT-B/16 architecture. What is checked: the tower against open_clip's own
forward and an explicit softmax(QK^T), position embeddings at other grids, the CAA and its box
mask against direct computations, the text set of CLIP-ES, zero-shot prediction, shapes at
non-square sizes, bad input, and the commands (cache with resume, training, evaluation, boxes).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")

from conftest import TINY_CLIP, register_tiny_clip  # noqa: E402
from tedloc.errors import TedlocError  # noqa: E402
from tedloc.models.clip_vit import ClipSpec, ClipTower, load_clip  # noqa: E402
from tedloc.pseudolabels.clip_dense import multihead_qkv, neighbourhood_bias  # noqa: E402
from tedloc.pseudolabels.clip_es import (ClipES, ClipESConfig, background_allowed,  # noqa: E402
                                         balance_affinity, box_mask, minmax_eps, refine_with_affinity)
from tedloc.pseudolabels.clip_localizers import ClipESLocalizer, DenseClipLocalizer, create_training_free  # noqa: E402
from runtimes import CPU

TINY = TINY_CLIP
NAMES = ["red square", "sea lion", "valley", "cat"]


@pytest.fixture(scope="module", autouse=True)
def tiny_config(tmp_path_factory):
    register_tiny_clip(tmp_path_factory.mktemp("clip_config"))


@pytest.fixture(scope="module")
def tower() -> ClipTower:
    torch.manual_seed(0)
    return load_clip(ClipSpec(TINY, "random"))


def _images(b=2, h=48, w=32, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, 3, h, w)).astype(np.float32))


# ----------------------------------------------------------------------------- the tower
def test_tower_matches_open_clip_and_an_explicit_attention(tower):
    x = _images(2, 32, 32)
    with torch.no_grad():
        tokens, grid = tower.embed(x)
        out, mean_attention = tower.run_blocks(tokens, tower.num_blocks, weights_from=1)
        expected = F.normalize(tower.model.encode_image(x), dim=-1)
    assert grid == (4, 4)
    torch.testing.assert_close(tower.pooled(out), expected, atol=1e-5, rtol=1e-5)
    # the head-averaged attention of blocks 1 and 2 is softmax(q k^T / sqrt(d)) of their ln_1 input
    with torch.no_grad():
        h = tower.run_blocks(tokens, 1)[0]
        explicit = []
        for i in (1, 2):
            block = tower.blocks[i]
            q, k, _ = multihead_qkv(block.attn, block.ln_1(h))
            explicit.append((q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(dim=-1).mean(dim=1))
            h = tower.block(i, h)[0]
    torch.testing.assert_close(mean_attention, (explicit[0] + explicit[1]) / 2, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", [TINY, "ViT-B-16"])
def test_text_encoded_up_to_the_end_token_equals_open_clips(name):
    tower = load_clip(ClipSpec(name, "random"))
    tokens = tower.tokenizer(["a clean origami sea lion.", "a photo of a cat.", "x"])
    with torch.no_grad():
        expected = tower.model.encode_text(tokens)
    torch.testing.assert_close(tower.encode_tokens(tokens), expected, atol=1e-5, rtol=1e-4)


def test_position_embeddings_at_another_grid(tower):
    pos = tower.visual.positional_embedding
    assert tower.position_embedding((4, 4)) is pos  # the trained grid: unchanged
    new = tower.position_embedding((6, 3))
    assert new.shape == (1 + 18, pos.shape[1])
    torch.testing.assert_close(new[0], pos[0])  # the class token's entry is kept
    grid = pos[1:].T.reshape(1, -1, 4, 4)
    explicit = F.interpolate(grid, size=(6, 3), mode="bilinear", align_corners=False).reshape(pos.shape[1], -1).T
    torch.testing.assert_close(new[1:], explicit)
    # a linear ramp along the rows stays a ramp, constant along the columns
    ramp = torch.arange(4.0)[:, None].expand(4, 4).reshape(16, 1).expand(16, pos.shape[1])
    with torch.no_grad():
        saved = pos.clone()
        pos[1:] = ramp
        stretched = tower.position_embedding((8, 4))[1:, 0].reshape(8, 4)
        pos.copy_(saved)
    assert torch.all(stretched[:, :1] == stretched) and torch.all(stretched[1:, 0] >= stretched[:-1, 0])


def test_images_the_tower_cannot_take(tower):
    with pytest.raises(TedlocError, match="smaller than one 8x8 patch"):
        tower.embed(torch.zeros(1, 3, 4, 32))
    with pytest.raises(TedlocError, match="not a multiple of the 8x8 patch"):
        tower.embed(torch.zeros(1, 3, 36, 32))
    assert tower.preprocessing(36).input_size == 40  # rounded up, as CLIP-ES does
    pre = tower.preprocessing()
    assert pre.input_size == 32 and pre.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)


# ----------------------------------------------------------------------------- CAA and its box mask
def test_box_mask_follows_clip_es_boxes():
    cam = np.zeros((6, 8), dtype=np.float32)
    cam[1:3, 1:3] = 1.0  # a region inside
    cam[3:6, 5:8] = 0.5  # a region touching the right and bottom borders
    cam[0, 7] = 0.39  # under 0.4 x max: no region
    mask = box_mask(cam, 0.4)
    expected = np.zeros((6, 8), dtype=np.float32)
    expected[1:3, 1:3] = 1
    expected[3:5, 5:7] = 1  # the box's end is clipped to W-1 / H-1 (exclusive): the last row and column stay out
    np.testing.assert_array_equal(mask, expected)
    # the cut is on the uint8 map, strictly above int(0.4 * 255) = 102: 0.4 -> 102 is out, 0.41 -> 104 is in
    cam = np.zeros((5, 5), dtype=np.float32)
    cam[2, 2], cam[0, 0], cam[4, 0] = 1.0, 0.4, 0.41
    assert box_mask(cam, 0.4)[0, 0] == 0 and box_mask(cam, 0.4)[2, 2] == 1
    assert box_mask(np.zeros((4, 4), np.float32)).sum() == 0  # nothing above the cut: an empty mask


def _caa_numpy(cam: np.ndarray, attention: np.ndarray, threshold: float, rounds: int) -> np.ndarray:
    t = attention.astype(np.float64)
    for _ in range(rounds):
        t = t / t.sum(axis=0, keepdims=True)
        t = t / t.sum(axis=1, keepdims=True)
    t = (t + t.T) / 2
    t = t @ t
    m = box_mask(cam, threshold).reshape(-1)
    refined = np.array([sum(t[i, j] * m[j] * cam.reshape(-1)[j] for j in range(t.shape[1]))
                        for i in range(t.shape[0])]).reshape(cam.shape)
    refined = refined - refined.min()
    return refined / (refined.max() + 1e-7)


def test_caa_equals_a_direct_computation_on_hand_made_attention():
    rng = np.random.default_rng(0)
    cams = rng.random((2, 3, 4)).astype(np.float32)
    cams[0, 0, 0], cams[1, 2, 3] = 1.0, 1.0
    attention = rng.random((2, 12, 12)).astype(np.float32) + np.eye(12, dtype=np.float32)[None] * 3
    got = refine_with_affinity(torch.from_numpy(cams), torch.from_numpy(attention), 0.4, 3)
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), _caa_numpy(cams[b], attention[b], 0.4, 3), atol=1e-5)
    t = balance_affinity(torch.from_numpy(attention[0]).double(), 3)
    torch.testing.assert_close(t, t.T)  # symmetrised before the square


def test_minmax_eps_is_grad_cams_scaling():
    x = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    torch.testing.assert_close(minmax_eps(x), (x - 1) / (4 + 1e-7))


# ----------------------------------------------------------------------------- CLIP-ES's text set
def test_background_words_that_are_the_class_never_compete(tower):
    allowed = background_allowed(NAMES, ("sea", "valley", "sky", "sea lion"), drop_colliding=True)
    assert allowed.tolist() == [[True, True, True, True], [False, True, True, False], [True, False, True, True],
                                [True, True, True, True]]
    assert background_allowed(NAMES, ("sea",), drop_colliding=False).all()
    es = ClipES(tower, NAMES, ClipESConfig(background=("sea", "valley", "sky")))
    emb = F.normalize(torch.randn(4, es.class_text.shape[1]), dim=-1)
    logits = es.text_logits(emb, torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4, 4)
    # column 0 is always the image's own class: the Grad-CAM target is never a background prompt
    torch.testing.assert_close(logits[:, 0], tower.logit_scale * (emb * es.class_text).sum(dim=1))
    assert torch.isinf(logits[1, 1]) and torch.isinf(logits[2, 2]) and torch.isfinite(logits[0]).all()
    no_bg = ClipES(tower, NAMES, ClipESConfig(background=()))
    assert no_bg.text_logits(emb, torch.tensor([0, 1, 2, 3])).shape == (4, 1)


def test_clip_es_maps_shapes_ranges_and_refinement(tower):
    es = ClipES(tower, NAMES, ClipESConfig(caa_blocks=2))
    images = _images(3, 48, 32)
    classes = torch.tensor([0, 1, 3])
    _, refined = es.maps(images, classes)
    _, plain = es.maps(images, classes, refine=False)
    assert refined.shape == plain.shape == (3, 6, 4) and not refined.requires_grad
    for m in (refined, plain):
        assert m.min() >= 0 and m.max() <= 1
        assert torch.allclose(m.flatten(1).max(dim=1).values, torch.ones(3), atol=1e-3)
    # one image alone gives the same maps as in the batch (images never interact)
    _, single = es.maps(images[1:2], classes[1:2])
    torch.testing.assert_close(single[0], refined[1], atol=1e-5, rtol=1e-4)


def test_grad_cam_equals_a_hook_on_open_clips_own_forward(tower):
    """The softmax-Grad-CAM (before CAA) against a computation through open_clip's own transformer forward,
    with a hook on the last block's ln_1 (as pytorch-grad-cam takes it)."""
    es = ClipES(tower, NAMES, ClipESConfig(background=("sky", "sea"), refine=False))
    images, classes = _images(2, 48, 32, seed=7), torch.tensor([3, 1])
    _, ours = es.maps(images, classes)
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["a"] = output

    handle = tower.blocks[-1].ln_1.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x, grid = tower.embed(images.clone().requires_grad_(True))  # frozen weights: the graph starts here
            tokens = tower.visual.transformer(x)
            emb = F.normalize(tower.visual.ln_post(tokens[:, 1:]).mean(dim=1) @ tower.visual.proj, dim=-1)
            probs = []
            for b, c in enumerate(classes.tolist()):
                text = torch.cat([es.class_text[c:c + 1], es.background_text[:1 if c == 1 else 2]])  # "sea" leaves
                probs.append((tower.logit_scale * emb[b] @ text.T).softmax(dim=-1)[0])        # "sea lion"'s set
            torch.stack(probs).sum().backward()
    finally:
        handle.remove()
    a, g = captured["a"].detach()[:, 1:], captured["a"].grad[:, 1:]
    cam = torch.relu((a * g.mean(dim=1, keepdim=True)).sum(dim=-1)).reshape(2, *grid)
    torch.testing.assert_close(ours, minmax_eps(minmax_eps(cam)), atol=1e-5, rtol=1e-4)


def test_without_background_prompts_the_target_is_the_logit(tower):
    es = ClipES(tower, NAMES, ClipESConfig(background=(), refine=False))
    _, maps = es.maps(_images(2, 32, 32), torch.tensor([0, 2]))
    assert maps.flatten(1).max(dim=1).values.min() > 0.9  # not the all-zero map of a softmax over one prompt


@pytest.mark.parametrize("name", ["clip-es", "clip", "sclip", "naclip"])
def test_reduced_precision_keeps_the_head_in_float32(tower, name):
    from tedloc.utils.device import Runtime

    loc = _localizer(tower, name)
    images, classes = _images(2, 48, 32), torch.tensor([1, 2])
    full = loc.cams(images, classes)
    loc.to(Runtime(torch.device("cpu"), "bf16"))
    try:
        scores, maps = loc.predict(images)
        given, probs = loc.cams(images, classes), loc.scores(images)
    finally:
        loc.to(CPU)
    assert scores.dtype == maps.dtype == given.dtype == probs.dtype == torch.float32
    assert torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-5)
    assert (given - full).abs().mean() < 0.1  # bf16 blocks: close to the fp32 maps


def test_clip_es_on_the_real_vit_b16_architecture_at_a_non_square_size():
    torch.manual_seed(0)
    tower = load_clip(ClipSpec("ViT-B-16", "random"))
    es = ClipES(tower, NAMES)
    _, maps = es.maps(_images(1, 160, 224), torch.tensor([2]))
    assert maps.shape == (1, 10, 14) and 0.9 < maps.max() <= 1 and maps.min() == 0
    assert tower.preprocessing().input_size == 224 and tower.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)


# ----------------------------------------------------------------------------- the localizers
def _localizer(tower, name, **options):
    pre = tower.preprocessing(48)
    if name == "clip-es":
        return ClipESLocalizer(tower, NAMES, pre, templates="photo", config=ClipESConfig(caa_blocks=2, **options),
                               runtime=CPU)
    return DenseClipLocalizer(tower, NAMES, pre, templates="photo", variant=name, runtime=CPU)


@pytest.mark.parametrize("name", ["clip-es", "clip", "sclip", "naclip"])
def test_localizers_predict_without_labels_and_map_given_classes(tower, name):
    from tedloc.models.localizer import ClassConditionalMaps, ClassScores, LocalizationModel

    loc = _localizer(tower, name)
    assert isinstance(loc, LocalizationModel) and isinstance(loc, ClassConditionalMaps)
    assert isinstance(loc, ClassScores) and loc.map_kind == name
    images = _images(2, 48, 32)
    scores, maps = loc.predict(images)
    assert scores.shape == (2, 4) and torch.allclose(scores.sum(dim=1), torch.ones(2))
    assert maps.shape == (2, 6, 4) and torch.isfinite(maps).all()
    torch.testing.assert_close(loc.scores(images), scores, atol=1e-5, rtol=1e-4)
    # predict's maps are those of the predicted classes
    torch.testing.assert_close(loc.cams(images, scores.argmax(dim=1)), maps, atol=1e-5, rtol=1e-4)


def test_zero_shot_prediction_picks_the_class_whose_text_is_the_image(tower):
    loc = _localizer(tower, "clip")
    images = _images(3, 48, 48, seed=5)
    with torch.no_grad():
        x, _ = tower.embed(images, pos_mode="bicubic")
        pooled = tower.pooled(tower.run_blocks(x, tower.num_blocks)[0])
    loc.classify_text = torch.cat([pooled[[2, 0, 1]], F.normalize(torch.randn(1, pooled.shape[1]), dim=-1)])
    assert loc.scores(images).argmax(dim=1).tolist() == [1, 2, 0]
    es = _localizer(tower, "clip-es")
    es.classify_text = loc.classify_text
    scores, _ = es.predict(images)
    assert scores.argmax(dim=1).tolist() == [1, 2, 0]


def _explicit_last_block(tower, x, variant):
    """SCLIP's / NACLIP's last block written out head by head from the weights (no shared helper)."""
    block = tower.blocks[-1]
    attn = block.attn
    h = block.ln_1(x)
    d_model, heads = h.shape[-1], attn.num_heads
    hd = d_model // heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    q = h @ w[:d_model].T + bias[:d_model]
    k = h @ w[d_model:2 * d_model].T + bias[d_model:2 * d_model]
    v = h @ w[2 * d_model:].T + bias[2 * d_model:]
    n = h.shape[1]
    gh = int(round((n - 1) ** 0.5))
    outs = []
    for i in range(heads):
        qi, ki, vi = (t[..., i * hd:(i + 1) * hd] for t in (q, k, v))
        if variant == "sclip":
            a = (torch.softmax(qi @ qi.transpose(1, 2) / hd ** 0.5, -1)
                 + torch.softmax(ki @ ki.transpose(1, 2) / hd ** 0.5, -1))
        else:
            g = torch.zeros(n, n)
            for p in range(1, n):
                for r in range(1, n):
                    dy, dx = (p - 1) // gh - (r - 1) // gh, (p - 1) % gh - (r - 1) % gh
                    g[p, r] = np.exp(-(dy * dy + dx * dx) / (2 * 5.0 ** 2))
            a = torch.softmax(ki @ ki.transpose(1, 2) / hd ** 0.5 + g, -1)
        outs.append(a @ vi)
    out = attn.out_proj(torch.cat(outs, dim=-1))
    if variant == "naclip":
        return out  # no residual, no MLP
    y = x + out
    return y + block.mlp(block.ln_2(y))


@pytest.mark.parametrize("variant", ["sclip", "naclip"])
def test_dense_variant_last_blocks_equal_their_definitions(tower, variant):
    from tedloc.pseudolabels.clip_dense import LAST_BLOCKS

    with torch.no_grad():
        x, grid = tower.embed(_images(2, 32, 32))
        x, _ = tower.run_blocks(x, tower.num_blocks - 1)
        got = LAST_BLOCKS.get(variant)(tower, tower.blocks[-1], x, grid)
        torch.testing.assert_close(got, _explicit_last_block(tower, x, variant), atol=1e-5, rtol=1e-4)


def test_dense_variants_last_blocks(tower):
    bias = neighbourhood_bias((3, 4), sigma=5.0)
    assert bias.shape == (13, 13) and torch.all(bias[0] == 0) and torch.all(bias[:, 0] == 0)
    assert torch.allclose(torch.diagonal(bias)[1:], torch.ones(12))
    assert bias[1, 2] == pytest.approx(np.exp(-1 / 50)) and bias[1, 6] == pytest.approx(np.exp(-2 / 50))
    images = _images(1, 32, 32)
    maps = {v: _localizer(tower, v).cams(images, torch.tensor([1])) for v in ("clip", "sclip", "naclip")}
    assert not torch.allclose(maps["clip"], maps["sclip"]) and not torch.allclose(maps["clip"], maps["naclip"])
    assert all(m.abs().max() <= 1 + 1e-6 for m in maps.values())  # cosines


# ----------------------------------------------------------------------------- native sizes and their cache
def test_native_views_round_each_image_up_to_the_patch():
    from tedloc.data.transforms import NativeTransform
    from tedloc.pseudolabels.compute import size_batches

    native = NativeTransform(16)
    assert native.size((208, 160)) == (208, 160) and native.size((150, 230)) == (160, 240)
    assert native.size((1, 17)) == (16, 32)
    view = native.view((145, 227))
    assert view.resized == (160, 240) and view.crop == (0, 0, 160, 240) and not view.flip
    assert NativeTransform(16, max_side=64).size((400, 100)) == (64, 16)  # 64 x 16 after the cap, then rounded
    with pytest.raises(TedlocError, match="max_side"):
        NativeTransform(16, max_side=8)
    sizes = [(16, 32), (32, 32), (16, 32), (16, 32), (32, 32)]
    assert size_batches([0, 1, 2, 3, 4], sizes, 2) == [[0, 2], [3], [1, 4]]


def test_clip_es_fills_caches_natively_unless_an_input_size_is_given(tower):
    from tedloc.data.preprocessing import Preprocessing
    from tedloc.methods import get_method

    clip_es = get_method("clip-es")
    native = clip_es.create(NAMES, runtime=CPU, clip=TINY, clip_pretrained="random", templates="photo")
    square = clip_es.create(NAMES, runtime=CPU, clip=TINY, clip_pretrained="random", input_size=48, templates="photo")
    assert native.resolution == "native" and native.cache_transform().multiple == 8
    assert square.resolution == "square" and square.cache_transform() is None
    with pytest.raises(TedlocError, match="resolution"):
        ClipESLocalizer(tower, NAMES, Preprocessing(32), runtime=CPU, resolution="tall")


def test_a_cache_of_per_image_maps(tmp_path):
    from tedloc.data.transforms import View
    from tedloc.pseudolabels import MapCache
    from tedloc.pseudolabels.views import maps_on_grid

    ids, shapes = ["a", "b", "c"], np.array([[2, 3], [4, 4], [2, 3]])
    maps = [np.random.default_rng(i).random(tuple(s)).astype(np.float32) for i, s in enumerate(shapes)]
    cache = MapCache(tmp_path / "c", ids, source={"method": "m"}, shapes=shapes)
    assert cache.size == (4, 4) and cache.shape(1) == (4, 4) and cache.maps.shape == (6 + 16 + 6,)
    cache.write(np.array([0, 2]), [maps[0], maps[2]])
    with pytest.raises(ValueError, match="row 1"):
        cache.write(np.array([1]), [maps[0]])
    assert cache.missing().tolist() == [1] and not cache.complete
    with pytest.raises(TedlocError, match="not computed"):
        cache.get([1])
    cache.write(np.array([1]), maps[1][None])
    del cache
    cache = MapCache(tmp_path / "c", ids)
    got = cache.get([2, 1])
    assert [tuple(m.shape) for m in got] == [(2, 3), (4, 4)]
    np.testing.assert_allclose(got[1].numpy(), maps[1], atol=5e-4)  # float16
    # each map covers its whole image: on an identity view it comes back at the grid asked for
    views = torch.stack([View((30, 20), (30, 20), (0, 0, 30, 20)).to_tensor()] * 2)
    assert maps_on_grid(got, views, (5, 7)).shape == (2, 5, 7)
    for other in ({"size": (2, 3)}, {"shapes": shapes[[1, 0, 2]]}):
        with pytest.raises(TedlocError, match="the cache holds"):
            MapCache(tmp_path / "c", ids, **other)
    with pytest.raises(TedlocError, match="not both"):
        MapCache(tmp_path / "d", ids, (2, 3), shapes=shapes)


# ----------------------------------------------------------------------------- bad input
def test_bad_models_and_class_names(tower, tmp_path):
    with pytest.raises(TedlocError, match="unknown open_clip model 'ViT-B-61'"):
        load_clip(ClipSpec("ViT-B-61", "random"))
    with pytest.raises(TedlocError, match="unknown weights 'opneai' for open_clip ViT-B-16.*openai"):
        load_clip(ClipSpec("ViT-B-16", "opneai"))
    weights = tmp_path / "tiny.bin"
    torch.save(tower.model.state_dict(), weights)
    with pytest.raises(TedlocError, match="do not fit open_clip ViT-B-32"):
        load_clip(ClipSpec("ViT-B-32", str(weights)))
    assert load_clip(ClipSpec(TINY, str(weights))).patch_size == (8, 8)  # a fitting file loads
    scripted = tmp_path / "other.pt"  # a TorchScript archive that is not OpenAI's CLIP release file
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(TedlocError, match="could not read it as OpenAI's CLIP release file"):
        load_clip(ClipSpec("ViT-B-16", str(scripted)))
    with pytest.raises(TedlocError, match=r"class 1 \(' '\) tokenises to nothing"):
        tower.check_class_names(["cat", " "])
    with pytest.raises(TedlocError, match="unknown training-free localizer 'clipes'"):
        create_training_free("clipes", NAMES, ClipSpec(TINY, "random"), runtime=CPU)


def test_openai_weights_are_built_with_quick_gelu(monkeypatch):
    """OpenAI's tags need QuickGELU, which open_clip >= 2.26 leaves to the caller for "ViT-B-16"."""
    import contextlib

    import tedloc.models.clip_vit as clip_vit

    calls = []

    def fake_create(name, pretrained=None, **kw):
        calls.append((name, pretrained, kw.get("force_quick_gelu")))
        raise RuntimeError("no network here")

    monkeypatch.setattr(open_clip, "create_model", fake_create)
    monkeypatch.setattr(clip_vit, "loading_weights", lambda spec: contextlib.nullcontext())  # as if in the cache
    for tag in ("openai", "laion2b_s34b_b88k"):
        with pytest.raises(TedlocError, match=f"ViT-B-16@{tag}: the weights in the cache do not load"):
            clip_vit.create_open_clip(ClipSpec("ViT-B-16", tag))
    assert calls == [("ViT-B-16", "openai", True), ("ViT-B-16", "laion2b_s34b_b88k", False)]


# ----------------------------------------------------------------------------- the commands
def _main(*args) -> int:
    from tedloc.cli import main

    return main([str(a) for a in args])


def test_cams_source_clip_es_fills_a_resumable_cache_that_tedloc_trains_on(synthetic_small, tmp_path, capsys):
    from tedloc.pseudolabels import MapCache

    clip = ["--clip", TINY, "--clip-pretrained", "random", "--input-size", "48", "--templates", "photo"]
    out = tmp_path / "cache"
    assert _main("cams", "--source", "clip-es", "--data", synthetic_small, "--split", "train", "--out", out,
                 "--batch-size", "7", "--device", "cpu", *clip) == 0
    cache = MapCache(out)
    assert cache.size == (6, 6) and len(cache.missing()) == 0
    assert cache.source["method"] == "clip-es" and cache.source["model"]["clip"] == TINY
    first = np.asarray(cache.maps).copy()
    # an interrupted cache resumes with the missing rows only, to the same maps
    cache.maps[[2, 9]] = 0
    cache.maps.flush()
    cache.done[[2, 9]] = False
    cache.done_rows.save()
    del cache
    assert _main("cams", "--source", "clip-es", "--data", synthetic_small, "--split", "train", "--out", out,
                 "--device", "cpu", *clip) == 0
    np.testing.assert_allclose(np.asarray(MapCache(out).maps, dtype=np.float32), first.astype(np.float32), atol=2e-3)
    # another source into the same folder is refused; a run source needs --run
    assert _main("cams", "--source", "naclip", "--data", synthetic_small, "--out", out, "--device", "cpu", *clip) == 2
    assert "another source" in capsys.readouterr().err
    assert _main("cams", "--source", "cam", "--data", synthetic_small, "--out", tmp_path / "x") == 2
    assert "needs --run" in capsys.readouterr().err
    # TeD-Loc trains on it unchanged
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    assert _main("anchors", "--data", synthetic_small, "--text-encoder", f"file:{tmp_path / 'emb.npy'}",
                 "--out", tmp_path / "anchors.safetensors") == 0
    assert _main("train", "--method", "tedloc", "--data", synthetic_small,
                 "--anchors", tmp_path / "anchors.safetensors",
                 "--cams", out, "--out", tmp_path / "run", "--encoder", "vit_tiny_patch16_224", "--input-size", "48",
                 "--epochs", "1", "--batch-size", "8", "--device", "cpu") == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_cams_source_clip_es_is_native_by_default(synthetic_small, tmp_path, capsys):
    """Without --input-size each image at its own size (48x48 here: 6x6 maps of 8-pixel patches), per-image maps
    that the trainers read; the view is part of the cache's source, so a square run never reuses it."""
    from tedloc.data import load_dataset
    from tedloc.data.transforms import TrainTransform
    from tedloc.pseudolabels import MapCache
    from tedloc.pseudolabels.views import maps_on_grid

    clip = ["--clip", TINY, "--clip-pretrained", "random", "--templates", "photo"]
    out = tmp_path / "native"
    assert _main("cams", "--source", "clip-es", "--data", synthetic_small, "--out", out, "--device", "cpu", *clip) == 0
    cache = MapCache(out)
    assert cache.complete and cache.shapes.tolist() == [[6, 6]] * len(cache)
    assert cache.source["view"] == "native" and cache.source["multiple"] == 8 and cache.source["max_side"] == 1024
    maps = cache.get(np.arange(4))
    assert all(0 <= float(m.min()) and float(m.max()) <= 1 for m in maps)
    sizes = load_dataset(synthetic_small)["train"].sizes
    crops = TrainTransform(32, 40)  # the trainers' random crops and flips of the images, applied to their maps
    views = torch.stack([crops.view(tuple(sizes[i]), np.random.default_rng(i)).to_tensor() for i in range(4)])
    assert maps_on_grid(maps, views, (3, 3)).shape == (4, 3, 3)
    capsys.readouterr()
    assert _main("cams", "--source", "clip-es", "--data", synthetic_small, "--out", out, "--input-size", "48",
                 "--device", "cpu", *clip) == 2
    assert "another source" in capsys.readouterr().err


def test_evaluate_a_training_free_localizer(synthetic_small, tmp_path, capsys):
    clip = ["--clip", TINY, "--clip-pretrained", "random", "--input-size", "48", "--templates", "photo"]
    for name, map_class in (("clip-es", "true"), ("clip-es", "pred"), ("naclip", "true")):
        out = tmp_path / f"{name}-{map_class}.json"
        assert _main("evaluate", "--method", name, "--data", synthetic_small, "--split", "test", "--map-class",
                     map_class, "--json", out, "--device", "cpu", *clip) == 0
        metrics = json.loads(out.read_text())
        assert metrics["map"] == name and metrics["map_class"] == map_class and metrics["images"] == 8
        assert 0 <= metrics["MaxBoxAccV2"] <= 100 and metrics["model"]["clip_pretrained"] == "random"
    assert _main("evaluate", "--data", synthetic_small, *clip) == 2
    assert "either --run" in capsys.readouterr().err
    # the true class's maps are not the predicted class's: with a class no image has, every map is that class's
    gt = json.loads((tmp_path / "clip-es-true.json").read_text())
    pred = json.loads((tmp_path / "clip-es-pred.json").read_text())
    assert gt["CL@1"] == pred["CL@1"]  # the same zero-shot classification either way


def test_evaluate_a_run_with_the_true_classes_maps(synthetic_small, tmp_path):
    from tedloc.data import load_dataset
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods import load_model
    from tedloc.methods.cam import PretrainConfig, pretrain

    pretrain(synthetic_small, tmp_path / "cam", PretrainConfig(arch="tedloc_resnet_tiny", input_size=48, epochs=1,
                                                               batch_size=8, workers=0), runtime=CPU)
    split = load_dataset(synthetic_small)["test"]
    model = load_model(tmp_path / "cam", runtime=CPU)
    pred = evaluate_localizer(model, split, map_class="pred")
    true = evaluate_localizer(model, split, map_class="true")
    assert true["map_class"] == "true" and true["CL@1"] == pred["CL@1"]
    # the one-epoch CNN errs (seeded), and where it errs the true class's map is another map
    assert pred["CL@1"] < 100 and true["curves"] != pred["curves"]
    assert _main("evaluate", "--run", tmp_path / "cam", "--data", synthetic_small, "--map-class", "true",
                 "--device", "cpu") == 0


def test_clip_pseudo_boxes_use_clip_es(synthetic_small, tmp_path):
    from tedloc.data import load_dataset
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    split = load_dataset(synthetic_small)["val"]
    summary = make_pseudo_boxes(synthetic_small, "val", "clip", None, tmp_path / "clip.txt", clip=TINY,
                                clip_pretrained="random", runtime=CPU)
    assert summary["images"] == len(split)
    for line, (w, h) in zip((tmp_path / "clip.txt").read_text().splitlines(), split.sizes):
        x0, y0, x1, y1 = map(int, line.split(",")[1:])
        assert 0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h
