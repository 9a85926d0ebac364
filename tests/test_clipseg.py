"""CLIPSeg as a training-free localizer and map source, with random weights (no CLIPSeg weights exist here).

A tiny ``CLIPSegConfig`` (8-pixel patches, a 4-block image tower read at blocks 1/2/3, a 1-block text tower of
16 positions) keeps it fast; the released architecture is checked as a config. What is checked: the image
tower once + the decoder per prompt against transformers' own forward, the text side (open_clip's tokens)
against transformers' text features, the maps (sigmoid, pooled, min-max) and probabilities against explicit
computations, prompt dependence, the map cache and the command, loading from a folder, and the one-line
errors of missing weights.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from tedloc.errors import TedlocError  # noqa: E402
from tedloc.models.clip_vit import ClipSpec  # noqa: E402
from tedloc.pseudolabels.clip_localizers import ClipSegLocalizer, create_training_free  # noqa: E402
from tedloc.pseudolabels.clipseg import clipseg_config, load_clipseg, minmax_maps  # noqa: E402
from runtimes import CPU  # noqa: E402

NAMES = ["red square", "sea lion", "valley"]


def tiny_config(**changes):
    settings = {
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "max_position_embeddings": 16},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
                          "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16, "reduce_dim": 16, "extract_layers": [1, 2, 3], "decoder_num_attention_heads": 2,
        "decoder_intermediate_size": 32}
    settings.update(changes)
    return transformers.CLIPSegConfig(**settings)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """The tiny config as the JSON file ``--clip`` takes for random weights."""
    path = tmp_path_factory.mktemp("clipseg") / "tiny-clipseg.json"
    tiny_config().to_json_file(path)
    return str(path)


@pytest.fixture(scope="module")
def loc(tiny) -> ClipSegLocalizer:
    return create_training_free("clipseg", NAMES, ClipSpec(tiny, "random"), 48, "photo", runtime=CPU)


def _images(b=2, size=48, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, 3, size, size)).astype(np.float32))


def _hf_logits(model, images, conditional):
    with torch.no_grad():
        logits = model(pixel_values=images, conditional_embeddings=conditional).logits
    return logits.reshape(len(images), *logits.shape[-2:])


def _features(out):
    return out if torch.is_tensor(out) else out.pooler_output  # transformers 4.x: a tensor; 5.x: an output


# ----------------------------------------------------------------------------- the model in parts
def test_released_architecture_and_config_checks(tmp_path):
    config = clipseg_config("ViT-B-16")  # the rd64-uni model (transformers' default vision config is B/32)
    assert config.vision_config.patch_size == 16 and config.vision_config.num_hidden_layers == 12
    assert list(config.extract_layers) == [3, 6, 9] and config.reduce_dim == 64 and config.projection_dim == 512
    assert not config.use_complex_transposed_convolution and config.text_config.max_position_embeddings == 77
    with pytest.raises(TedlocError, match="released for ViT-B-16 only"):
        clipseg_config("ViT-B-32")
    bad = tmp_path / "bad.json"
    tiny_config(extract_layers=[1, 4]).to_json_file(bad)
    with pytest.raises(TedlocError, match=r"extract_layers \[1, 4\] must be blocks of its 4-block image tower"):
        clipseg_config(str(bad))


@pytest.mark.parametrize("refined", [False, True])
def test_tower_once_and_decoder_per_prompt_equal_transformers_forward(tmp_path, refined):
    path = tmp_path / "c.json"
    tiny_config(use_complex_transposed_convolution=refined).to_json_file(path)
    seg = load_clipseg(str(path), "random")
    images = _images(3, 48)  # 6x6 patches: position embeddings interpolated from the 4x4 grid
    conditional = torch.randn(4, 16)
    reduced, embedding, grid = seg.visual(images, pooled=True)
    pairs = torch.tensor([0, 2, 1, 2])  # image of each (image, prompt) pair
    ours = seg.decode(reduced, pairs, conditional, grid)
    expected = _hf_logits(seg.model, images[pairs], conditional)
    # upsampled by the patch (8), or by the refined head's two 8 // 4 = 2x transposed convolutions
    assert grid == (6, 6) and ours.shape == ((4, 24, 24) if refined else (4, 48, 48))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        clip_embedding = F.normalize(_features(seg.model.clip.get_image_features(pixel_values=images)), dim=-1)
    torch.testing.assert_close(embedding, clip_embedding, atol=1e-5, rtol=1e-4)
    # without the CLIP embedding the tower stops after block 3 of 4: the same decoder inputs
    short, none, _ = seg.visual(images, pooled=False)
    assert none is None and all(torch.equal(a, b) for a, b in zip(short, reduced))


def test_text_embeddings_are_clips_with_open_clip_tokens(loc):
    seg = loc.clipseg
    assert seg.tokenizer.name == "open_clip"
    texts = ["sea lion", "a photo of a red square.", " ".join(["very"] * 30) + " long"]  # the last is truncated
    ids, mask = seg.tokenizer(texts)
    assert ids.shape == (3, 16) and (ids[:, 0] == 49406).all() and ids[2, -1] == 49407 and mask[2].all()
    assert mask[0].tolist() == [1] * 4 + [0] * 12  # start, sea, lion, end
    with torch.no_grad():
        expected = _features(seg.model.clip.get_text_features(input_ids=ids, attention_mask=mask))
    torch.testing.assert_close(seg.text_embeddings(texts), expected, atol=1e-5, rtol=1e-4)
    # CLIPSeg's own text conditioning (input_ids) is our conditional embedding
    images = _images(2, 32)
    with torch.no_grad():
        from_ids = seg.model(pixel_values=images, input_ids=ids[:2], attention_mask=mask[:2]).logits
    torch.testing.assert_close(from_ids, _hf_logits(seg.model, images, seg.text_embeddings(texts[:2])),
                               atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- the localizer
def test_maps_and_probabilities_equal_their_definitions(loc):
    images = _images(2, 48, seed=3)
    scores, maps = loc.predict(images)
    assert scores.shape == (2, 3) and torch.allclose(scores.sum(dim=1), torch.ones(2))
    assert maps.shape == (2, 12, 12) and maps.dtype == torch.float32  # 48 / map_stride 4
    assert maps.min() >= 0 and maps.max() <= 1
    assert torch.allclose(maps.flatten(1).amin(dim=1), torch.zeros(2)) and torch.allclose(
        maps.flatten(1).amax(dim=1), torch.ones(2))
    # probabilities: softmax(exp(logit_scale) x cosine) of CLIPSeg's CLIP image embedding and the class prompts
    seg = loc.clipseg
    with torch.no_grad():
        image = F.normalize(_features(seg.model.clip.get_image_features(pixel_values=images)), dim=-1)
    text = F.normalize(seg.text_embeddings([f"a photo of a {n}." for n in NAMES]), dim=-1)
    torch.testing.assert_close(scores, (seg.logit_scale * image @ text.T).softmax(dim=-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loc.scores(images), scores)
    # maps: sigmoid of CLIPSeg's logits for the class name alone, 4x4 averaged, min-max per map
    classes = torch.tensor([2, 0])
    logits = _hf_logits(seg.model, images, seg.text_embeddings([NAMES[2], NAMES[0]]))
    pooled = F.avg_pool2d(torch.sigmoid(logits)[:, None], 4)[:, 0]
    lo, hi = pooled.flatten(1).amin(1)[:, None, None], pooled.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(loc.cams(images, classes), (pooled - lo) / (hi - lo), atol=1e-5, rtol=1e-4)
    # predict's maps are the predicted classes'
    torch.testing.assert_close(loc.cams(images, scores.argmax(dim=1)), maps)


def test_maps_depend_on_the_prompt_and_all_maps_batches_the_classes(loc):
    images = _images(2, 48, seed=1)
    every = loc.all_maps(images)
    assert every.shape == (2, 3, 12, 12)
    for k in range(3):
        torch.testing.assert_close(every[:, k], loc.cams(images, torch.full((2,), k)), atol=1e-5, rtol=1e-4)
    assert (every[:, 0] - every[:, 1]).abs().max() > 1e-3  # two classes, two maps
    small = ClipSegLocalizer(loc.clipseg, NAMES, loc.preprocessing, "photo", runtime=CPU, pair_batch=4)
    torch.testing.assert_close(small.all_maps(images), every)  # 6 pairs in batches of 4
    full = ClipSegLocalizer(loc.clipseg, NAMES, loc.preprocessing, "photo", runtime=CPU, map_stride=1,
                            prompt="a photo of a {}.")
    assert full.cams(images, torch.tensor([0, 1])).shape == (2, 48, 48)
    assert full.record()["prompt"] == "a photo of a {}." and full.record()["map_stride"] == 1


def test_minmax_of_a_constant_map_is_zeros(loc, monkeypatch):
    maps = torch.stack([torch.full((5, 5), 0.3), torch.arange(25.0).reshape(5, 5),
                        torch.full((5, 5), float("nan"))])
    out = minmax_maps(maps)
    assert torch.isfinite(out).all() and out[0].eq(0).all() and out[2].eq(0).all()
    torch.testing.assert_close(out[1], torch.arange(25.0).reshape(5, 5) / 24)
    # a decoder whose logits are constant (e.g. saturated) gives all-zero maps, not NaN
    monkeypatch.setattr(loc.clipseg, "decode", lambda reduced, index, cond, grid: torch.full((len(index), 48, 48), -3.0))
    got = loc.cams(_images(2, 48), torch.tensor([0, 1]))
    assert torch.isfinite(got).all() and got.eq(0).all()


def test_reduced_precision_keeps_outputs_in_float32(loc):
    from tedloc.utils.device import Runtime

    images, classes = _images(2, 48), torch.tensor([1, 2])
    full = loc.cams(images, classes)
    loc.to(Runtime(torch.device("cpu"), "bf16"))
    try:
        scores, maps = loc.predict(images)
        given = loc.cams(images, classes)
    finally:
        loc.to(CPU)
    assert scores.dtype == maps.dtype == given.dtype == torch.float32
    assert (given - full).abs().mean() < 0.1


def test_bad_class_names_prompts_and_sizes(loc):
    with pytest.raises(TedlocError, match=r"class 1 \(' '\) tokenises to nothing"):
        ClipSegLocalizer(loc.clipseg, ["cat", " "], loc.preprocessing, runtime=CPU)
    with pytest.raises(TedlocError, match="one {} for the class name"):
        ClipSegLocalizer(loc.clipseg, NAMES, loc.preprocessing, runtime=CPU, prompt="a cat")
    with pytest.raises(TedlocError, match="not a multiple of CLIPSeg's 8x8 patch"):
        loc.cams(torch.zeros(1, 3, 44, 44), torch.tensor([0]))
    assert loc.clipseg.preprocessing(44).input_size == 48 and loc.clipseg.preprocessing().input_size == 352


# ----------------------------------------------------------------------------- registration, cache, command
def test_clipseg_is_a_method_and_a_map_source():
    from tedloc.methods import list_methods
    from tedloc.pseudolabels import MAP_SOURCES
    from tedloc.pseudolabels.clip_localizers import TRAINING_FREE

    assert "clipseg" in TRAINING_FREE and "clipseg" in MAP_SOURCES.names()
    assert "clipseg" in list_methods("training-free")


def test_map_source_fills_a_cache_and_the_command_runs(loc, tiny, tmp_path, capsys):
    from tedloc.cli import main
    from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
    from tedloc.pseudolabels import compute_map_cache

    data = make_synthetic(tmp_path / "data", SyntheticConfig(classes=3, train=6, val=3, test=3, size=32))
    class_names = load_dataset(data).class_names
    model = create_training_free("clipseg", class_names, ClipSpec(tiny, "random"), 32, "photo", runtime=CPU)
    cache = compute_map_cache(model, data, "train", tmp_path / "cache", method="clipseg", batch_size=4,
                              runtime=CPU, model_record=model.record())
    assert cache.size == (8, 8) and len(cache.missing()) == 0  # 32 / 4
    stored = np.asarray(cache.maps, dtype=np.float32)
    assert stored.shape == (6, 8, 8) and stored.min() >= 0 and stored.max() <= 1
    assert cache.source["method"] == "clipseg" and cache.source["model"]["clipseg"] == "random"
    pred = compute_map_cache(model, data, "val", tmp_path / "pred", classes="pred", method="clipseg",
                             runtime=CPU, model_record=model.record())
    assert pred.size == (8, 8) and len(pred.missing()) == 0
    with pytest.raises(TedlocError, match="a 'clipseg' localizer cannot make 'clip' maps"):
        compute_map_cache(model, data, "val", tmp_path / "x", method="clip", runtime=CPU)
    # the command line: tedloc cams --source clipseg (and evaluate --method clipseg)
    clip = ["--clip", tiny, "--clip-pretrained", "random", "--input-size", "32", "--templates", "photo",
            "--device", "cpu"]
    assert main(["cams", "--source", "clipseg", "--data", str(data), "--split", "val", "--out",
                 str(tmp_path / "cli"), *clip]) == 0
    assert "source clipseg" in capsys.readouterr().out
    assert main(["evaluate", "--method", "clipseg", "--data", str(data), "--split", "test", "--json",
                 str(tmp_path / "m.json"), *clip]) == 0


# ----------------------------------------------------------------------------- weights
def test_a_saved_folder_loads_with_its_processor_settings(loc, tmp_path):
    folder = tmp_path / "clipseg-folder"
    loc.clipseg.model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    seg = load_clipseg("ViT-B-16", str(folder))
    assert seg.weights == str(folder.resolve()) and seg.tokenizer.name == "open_clip"  # no tokenizer files
    pre = seg.preprocessing()
    assert pre.input_size == 64 and pre.mean == (0.5, 0.5, 0.5) and pre.interpolation == "bilinear"
    images, cond = _images(1, 32), torch.randn(1, 16)
    reduced, _, grid = seg.visual(images)
    torch.testing.assert_close(seg.decode(reduced, torch.tensor([0]), cond, grid),
                               _hf_logits(loc.clipseg.model, images, cond))
    clip_only = tmp_path / "clip-only"  # a CLIPSegModel (no decoder) is refused
    transformers.CLIPSegModel(loc.clipseg.model.config).save_pretrained(clip_only)
    with pytest.raises(TedlocError, match="not a CLIPSegForImageSegmentation checkpoint"):
        load_clipseg("ViT-B-16", str(clip_only))


def _clip_tokenizer_from_open_clip(folder):
    """A transformers CLIPTokenizer written from open_clip's BPE files (OpenAI's vocabulary: the checkpoints' one)."""
    import json

    import open_clip

    oc = open_clip.get_tokenizer("ViT-B-16")
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({special.get(k, k): v for k, v in oc.encoder.items()}))
    merges = sorted(oc.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p, _ in merges) + "\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def test_a_checkpoints_tokenizer_is_used_and_equals_open_clips(loc, tmp_path):
    folder = tmp_path / "with-tokenizer"
    config = tiny_config()
    config.text_config.eos_token_id = 2  # the released configs' legacy value: the end token found by argmax
    transformers.CLIPSegForImageSegmentation(config).save_pretrained(folder)
    _clip_tokenizer_from_open_clip(tmp_path / "bpe").save_pretrained(folder)
    seg = load_clipseg("ViT-B-16", str(folder))
    assert seg.tokenizer.name == "hf"
    texts = ["sea lion", "a photo of a Red-Square.", "café", "great white shark, white shark",
             " ".join(["very"] * 30)]
    ids, mask = seg.tokenizer(texts)
    ref_ids, ref_mask = loc.clipseg.tokenizer(texts)  # open_clip's
    assert ids.shape == ref_ids.shape == (5, 16) and torch.equal(mask, ref_mask)
    assert torch.equal(ids * mask, ref_ids * ref_mask)  # the same tokens up to the end token (padding differs)
    from_hf = seg.text_embeddings(texts)
    seg.tokenizer = loc.clipseg.tokenizer  # open_clip's: the same conditional embeddings
    torch.testing.assert_close(seg.text_embeddings(texts), from_hf)


def test_missing_weights_say_what_to_do_in_one_line(monkeypatch, tmp_path):
    import tedloc.weights.availability as availability

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a name that is not in the cache, and no network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(TedlocError) as caught:
        create_training_free("clipseg", NAMES, ClipSpec("ViT-B-16", "CIDAS/no-such-clipseg-here"), runtime=CPU)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("weights of hf:CIDAS/no-such-clipseg-here: ")
    assert "tedloc weights fetch --model hf:CIDAS/no-such-clipseg-here" in message and "save_pretrained" in message
    # online but unreachable (a port nothing listens on): one line, at once, naming the default checkpoint
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(availability, "_reachable", {})
    with pytest.raises(TedlocError, match="127.0.0.1:9 is unreachable") as caught:
        load_clipseg()  # --clip-pretrained openai (the default): the rd64-uni checkpoint
    assert "\n" not in str(caught.value) and "hf:CIDAS/clipseg-rd64" in str(caught.value)
    weights_file = tmp_path / "rd64-uni.pth"
    weights_file.write_bytes(b"x")
    with pytest.raises(TedlocError, match="a Hugging Face model folder .* not a file"):
        load_clipseg("ViT-B-16", str(weights_file))
    with pytest.raises(TedlocError, match="names the architecture of random weights only"):
        load_clipseg("tiny.json", "CIDAS/clipseg-rd64-refined")
