"""wsolevaluation's methods (has, cutmix, adl, acol, spg): each method-specific module on hand-made inputs, the
one-line refusals, and (TEDLOC_WSOLEVAL_REF=a clovaai/wsolevaluation checkout) side by side with its modules."""
from __future__ import annotations

import math
import os
import random
import sys

import numpy as np
import pytest
import torch

from runtimes import CPU
from tedloc.errors import OptionError, TedlocError
from tedloc.methods import get_method
from tedloc.methods.acol import ACoLConfig, build_acol_network, erase_attention
from tedloc.methods.adl import ADL, ADLConfig, build_adl_network, default_adl_layers, drop_mask
from tedloc.methods.cam_variants import class_map_attention, min_max
from tedloc.methods.cutmix import cutmix_batch, cutmix_box
from tedloc.methods.has import hidden_patches, hide_patches, patch_side
from tedloc.methods.spg import SPGConfig, build_spg_network, default_spg_taps, seed_mask, seeded_bce, spg_loss_terms
from tedloc.models.classifier import build_classifier
from tedloc.protocol.sweep import pool_values

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- HaS

def test_hidden_patches_are_keyed_by_the_generator():
    # default_rng(0).random((2, 2)) = [[0.637, 0.270], [0.041, 0.017]]: hidden where <= 0.5
    mask = hidden_patches(4, 4, 2, 0.5, np.random.default_rng(0))
    assert mask.tolist() == [[False, False, True, True], [False, False, True, True],
                             [True, True, True, True], [True, True, True, True]]
    # a 5x5 image: 3x3 patches of 2 pixels, the last row and column cut
    mask = hidden_patches(5, 5, 2, 0.5, np.random.default_rng(0))
    draws = np.random.default_rng(0).random((3, 3)) <= 0.5
    assert mask.shape == (5, 5) and mask[4, 4].item() == draws[2, 2] and mask[0, 4].item() == draws[0, 2]
    assert not hidden_patches(4, 4, 0, 1.0, np.random.default_rng(0)).any()  # grid 0: nothing hidden
    assert hidden_patches(4, 4, 2, 1.0, np.random.default_rng(0)).all()


def test_hide_patches_sets_the_mean():
    images = torch.ones(2, 3, 4, 4)
    out = hide_patches(images, 2, 0.5, [np.random.default_rng(0), np.random.default_rng(1)])
    assert torch.equal(out[0, 1] == 0, hidden_patches(4, 4, 2, 0.5, np.random.default_rng(0)))
    assert torch.equal(out[1, 2] == 0, hidden_patches(4, 4, 2, 0.5, np.random.default_rng(1)))
    assert images.eq(1).all()  # the input is untouched
    assert patch_side(4, None, 64) == 4 and patch_side(4, 0.25, 64) == 32 and patch_side(4, 0.0, 64) == 1


# ---- CutMix

class _Draws:
    """A generator whose draws are given."""

    def __init__(self, coin, lam, order, rows, cols):
        self.coin, self.lam, self.order, self.ints = coin, lam, order, [rows, cols]

    def random(self):
        return self.coin

    def beta(self, a, b):
        return self.lam

    def permutation(self, n):
        return np.array(self.order)

    def integers(self, n):
        return self.ints.pop(0)


def test_cutmix_box():
    assert cutmix_box(10, 8, 0.75, 5, 1) == (3, 0, 7, 3)  # sides 5 and 4, halved to 2; clipped at the left
    assert cutmix_box(10, 8, 0.0, 9, 7) == (4, 3, 10, 8)
    assert cutmix_box(10, 8, 1.0, 5, 4) == (5, 4, 5, 4)  # an empty box


def test_cutmix_mixes_images_and_labels():
    images = torch.arange(2 * 1 * 10 * 8, dtype=torch.float32).view(2, 1, 10, 8)
    labels = torch.tensor([3, 1])
    mix = cutmix_batch(images, labels, 1.0, 0.5, _Draws(0.2, 0.75, [1, 0], 5, 1))
    assert mix.applied and mix.box == (3, 0, 7, 3) and mix.labels_b.tolist() == [1, 3]
    assert mix.lam == pytest.approx(1 - 4 * 3 / 80)
    assert torch.equal(mix.images[0, :, 3:7, 0:3], images[1, :, 3:7, 0:3])
    assert torch.equal(mix.images[1, :, 3:7, 0:3], images[0, :, 3:7, 0:3])
    outside = torch.ones(10, 8, dtype=torch.bool)
    outside[3:7, 0:3] = False
    assert torch.equal(mix.images[:, :, outside], images[:, :, outside])
    skipped = cutmix_batch(images, labels, 1.0, 0.5, _Draws(0.7, 0.75, [1, 0], 5, 1))  # 0.5 > 0.7 fails
    assert not skipped.applied and skipped.lam == 1.0 and skipped.images is images
    assert not cutmix_batch(images, labels, 0.0, 1.0, _Draws(0.2, 0.75, [1, 0], 5, 1)).applied  # beta 0


# ---- ADL

def test_adl_drop_mask_and_maps():
    attention = torch.tensor([[[[0.1, 0.5], [0.95, 1.0]]], [[[2.0, 1.0], [0.0, 1.9]]]])
    assert drop_mask(attention, 0.9).tolist() == [[[[1, 1], [0, 0]]], [[[0, 1], [1, 0]]]]
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[3.0, 2.0], [1.0, 0.0]]]])  # channel mean: 2 everywhere
    features[0, 0, 1, 1] = 8.0  # mean at (1, 1): 4
    layer = ADL(drop_rate=1.0, threshold=0.9).train()  # always the drop mask
    assert torch.equal(layer(features), features * torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    layer = ADL(drop_rate=0.0, threshold=0.9).train()  # always the importance map
    mean = features.mean(1, keepdim=True)
    assert torch.allclose(layer(features), features * torch.sigmoid(mean))
    assert layer.eval()(features) is features


def test_adl_placement_and_refusals():
    tiny = build_classifier("tedloc_resnet_tiny", 4)
    assert default_adl_layers(tiny) == ("stages.1.0", "stages.2.0")
    assert default_adl_layers(build_classifier("resnet18", 4)) == ("layer3.0", "layer4.0", "layer4.1")
    model = build_adl_network(ADLConfig(), 4)
    assert len(model.adl) == 2 and all(isinstance(m, ADL) for m in model.adl)
    # the weights keep the classifier's names
    assert set(model.state_dict()) == set(build_classifier("tedloc_resnet_tiny", 4).state_dict())
    with pytest.raises(OptionError, match=r"adl_layers: tedloc_resnet_tiny has no module 'stages.7'.*stages.0"):
        build_adl_network(ADLConfig(adl_layers=("stages.7",)), 4)
    with pytest.raises(OptionError, match=r"adl_drop_rate must be in \[0, 1\], got 1.5"):
        ADLConfig(adl_drop_rate=1.5)


# ---- ACoL

def test_acol_erasing():
    features = torch.arange(8, dtype=torch.float32).view(1, 2, 2, 2)
    attention = torch.tensor([[[[0.2, 0.7], [1.0, float("nan")]]]])
    assert erase_attention(features, attention, 0.7).tolist() == [[[[0, 0], [0, 3]], [[4, 0], [0, 7]]]]
    maps = torch.tensor([[[[1.0, 3.0], [5.0, 2.0]], [[0.0, 0.0], [4.0, 2.0]]]])
    assert class_map_attention(maps, torch.tensor([1]))[0, 0].tolist() == [[0.0, 0.0], [1.0, 0.5]]
    assert torch.isnan(min_max(torch.ones(1, 2, 2))).all()  # a constant map erases nothing


def test_acol_network_fuses_both_branches():
    torch.manual_seed(0)
    model = build_acol_network(ACoLConfig(acol_width=8, acol_threshold=0.5), 3).eval()
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([2, 0])
    out = model(images, labels, outputs=True)
    features = model.backbone.forward_features(images)
    attention = class_map_attention(model.branch_a(features), labels)
    assert torch.allclose(out["maps_b"], model.branch_b(features * (attention < 0.5).float()))
    logits, fused = model.fused_maps(images, labels)
    index = torch.arange(2)
    expected = torch.maximum(min_max(out["maps_a"][index, labels]), min_max(out["maps_b"][index, labels]))
    assert torch.equal(logits, out["logits"]) and torch.allclose(fused, expected)
    assert torch.equal(model(images), out["logits"])  # branch A's logits whatever erases
    with pytest.raises(OptionError, match="arch: acol needs a CNN"):
        build_acol_network(ACoLConfig(arch="tedloc_vit_tiny", input_size=32), 3)


# ---- SPG

def test_spg_seed_masks():
    attention = torch.full((1, 1, 6, 6), 0.3)
    attention[0, 0, :2, :2] = 0.9
    attention[0, 0, 5, 5] = 0.0
    mask = seed_mask(attention, 0.7, 0.1)  # 4 foreground pixels < 30: threshold 0.7 * 0.9 = 0.63, the same 4
    expected = torch.full((6, 6), 255.0)
    expected[:2, :2] = 1.0
    expected[5, 5] = 0.0
    assert torch.equal(mask[0, 0], expected)
    attention = torch.full((1, 1, 6, 6), 0.5)
    attention[0, 0, :2, :2] = 0.6  # the max; nothing above 0.7: relative threshold 0.42 takes every pixel
    assert seed_mask(attention, 0.7, 0.1).eq(1).all()
    attention = torch.full((1, 1, 6, 6), 0.8)
    attention[0, 0, 0, :5] = 0.5  # 31 pixels above 0.7: those; the five at 0.5 ignored
    mask = seed_mask(attention, 0.7, 0.1)[0, 0]
    assert mask[0, :5].eq(255).all() and mask[1:].eq(1).all() and mask[0, 5] == 1
    total, count = seeded_bce(torch.zeros(1, 1, 1, 3), torch.tensor([[[[1.0, 0.0, 255.0]]]]))
    assert count == 2 and total.item() == pytest.approx(2 * math.log(2))


def test_spg_network_and_losses():
    assert default_spg_taps(build_classifier("tedloc_resnet_tiny", 4)) == ("stages.0", "stages.1")
    assert default_spg_taps(build_classifier("resnet18", 4)) == ("layer3.0", "layer3")
    torch.manual_seed(0)
    model = build_spg_network(SPGConfig(spg_width=8, input_size=32), 4)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    out = model(images, labels)
    # the class map is the 1x1-convolution class map whose average is the logit
    assert torch.allclose(out["class_map"].mean((1, 2, 3)), out["logits"][torch.arange(2), labels], atol=1e-5)
    assert out["b1"].shape == (2, 1, 16, 16) and out["b2"].shape == (2, 1, 8, 8) and out["c"].shape == (2, 1, 4, 4)
    terms = spg_loss_terms(out, (32, 32), SPGConfig().thresholds)
    assert set(terms) == {"spg_b2", "spg_b1", "spg_c"} and all(t.count > 0 for t in terms.values())
    assert torch.equal(model(images), model.classifier(images))
    with pytest.raises(OptionError, match="spg layers: tedloc_resnet_tiny has no module 'nope'"):
        build_spg_network(SPGConfig(spg_layers=("nope", "stages.1")), 4)
    with pytest.raises(OptionError, match=r"spg_threshold_2l must be in \[0, 1\]"):
        SPGConfig(spg_threshold_2l=-0.1)


# ---- registration, refusals, sweep

def test_registered_search_spaces():
    spaces = {name: get_method(name).search_space for name in ("has", "cutmix", "adl", "acol", "spg")}
    assert spaces["has"]["has_drop_rate"] == ("uniform", 0.0, 1.0)
    assert spaces["acol"]["acol_threshold"] == ("uniform", 0.0, 1.0)
    assert {"adl_drop_rate", "adl_threshold"} <= set(spaces["adl"])
    assert sum(k.startswith("spg_threshold") for k in spaces["spg"]) == 6
    assert all({"lr", "weight_decay", "lr_gamma", "lr_step"} <= set(s) for s in spaces.values())
    values = pool_values(spaces["has"], 0, 3)
    assert 0.0 <= values["has_drop_rate"] <= 1.0 and isinstance(values["lr_step"], int)


@pytest.mark.parametrize("name,overrides,message", [
    ("has", {"has_drop_rate": 2.0}, "has_drop_rate must be in"),
    ("cutmix", {"cutmix_prob": -1.0}, "cutmix_prob must be in"),
    ("acol", {"arch": "tedloc_vit_tiny", "input_size": 32}, "arch: acol needs a CNN"),
    ("adl", {"adl_layers": ("stages.9",)}, "adl_layers: .* no module 'stages.9'"),
    ("spg", {"arch": "tedloc_vit_tiny", "input_size": 32}, "spg"),
])
def test_bad_options_fail_before_the_run_folder(name, overrides, message, synthetic_small, tmp_path):
    method = get_method(name)
    with pytest.raises(TedlocError, match=message):
        method.train(synthetic_small, tmp_path / "run", method.config(epochs=1, batch_size=8, **overrides),
                     runtime=CPU)
    assert not (tmp_path / "run").exists()


# ---- side by side with wsolevaluation (TEDLOC_WSOLEVAL_REF: a checkout of clovaai/wsolevaluation)

@pytest.fixture(scope="module")
def ref():
    path = os.environ.get("TEDLOC_WSOLEVAL_REF")
    if not path:
        pytest.skip("TEDLOC_WSOLEVAL_REF (a clovaai/wsolevaluation checkout) not set")
    import importlib

    sys.path.insert(0, path)
    try:  # by module name: wsol.method's package rebinds has and cutmix to its functions
        acol, adl, cutmix, has, spg, util = (importlib.import_module(f"wsol.method.{name}")
                                             for name in ("acol", "adl", "cutmix", "has", "spg", "util"))
    finally:
        sys.path.remove(path)
    return {"acol": acol, "adl": adl, "cutmix": cutmix, "has": has, "spg": spg, "util": util}


def test_ref_has(ref, monkeypatch):
    images = torch.randn(2, 3, 12, 12)
    rngs = [np.random.default_rng(5), np.random.default_rng(6)]
    draws = [float(v) for g in (np.random.default_rng(5), np.random.default_rng(6)) for v in g.random((3, 3)).ravel()]
    monkeypatch.setattr(random, "random", lambda: draws.pop(0))  # the reference's draws are ours, in its order
    expected = ref["has"].has(images.clone(), 4, 0.4)
    assert torch.equal(hide_patches(images, 4, 0.4, rngs), expected) and not draws


def test_ref_cutmix(ref, monkeypatch):
    monkeypatch.setattr(np, "int", int, raising=False)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    np.random.seed(3)
    torch.manual_seed(3)
    x, target_a, target_b, lam = ref["cutmix"].cutmix(images.clone(), labels, 1.0)
    np.random.seed(3)
    lam0 = np.random.beta(1.0, 1.0)
    torch.manual_seed(3)
    order = torch.randperm(4).numpy()
    rows, cols = np.random.randint(16), np.random.randint(16)
    mix = cutmix_batch(images, labels, 1.0, 1.0, _Draws(0.0, lam0, order, rows, cols))
    assert torch.equal(mix.images, x) and torch.equal(mix.labels_b, target_b) and mix.lam == pytest.approx(lam)


def test_ref_adl(ref):
    features = torch.relu(torch.randn(2, 5, 7, 7))
    for rate in (0.0, 1.0):
        theirs = ref["adl"].ADL(rate, 0.8).train()(features)
        assert torch.allclose(ADL(rate, 0.8).train()(features), theirs)


def test_ref_acol(ref):
    torch.manual_seed(1)
    features, maps = torch.randn(2, 6, 5, 5), torch.randn(2, 3, 5, 5)
    labels = torch.tensor([2, 1])
    attention = ref["util"].get_attention(maps, labels)
    assert torch.allclose(class_map_attention(maps, labels), attention.detach())
    assert torch.equal(erase_attention(features, attention.detach(), 0.6),
                       ref["acol"]._erase_attention(features, attention.detach(), 0.6))


def test_ref_spg(ref):
    torch.manual_seed(2)
    out = {"logits": torch.randn(2, 4), "class_map": torch.randn(2, 1, 7, 7) * 3, "b1": torch.randn(2, 1, 28, 28),
           "b2": torch.randn(2, 1, 14, 14), "c": torch.randn(2, 1, 7, 7)}
    labels = torch.tensor([1, 3])
    feat_map = torch.zeros(2, 4, 7, 7)
    feat_map[torch.arange(2), labels] = out["class_map"][:, 0]
    attention, fused = ref["spg"].compute_attention(feat_map, labels, out["b1"], out["b2"])
    theirs = ref["spg"].get_loss({"logits": out["logits"], "attention": attention.detach(), "fused_attention": fused,
                                  "logits_b1": out["b1"], "logits_b2": out["b2"], "logits_c": out["c"]}, labels,
                                 spg_thresholds=SPGConfig().thresholds)
    terms = spg_loss_terms(out, (224, 224), SPGConfig().thresholds)
    ours = torch.nn.functional.cross_entropy(out["logits"], labels) + sum(t.total / t.count for t in terms.values())
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    for high, low in SPGConfig().thresholds:
        assert torch.equal(seed_mask(fused, high, low), ref["spg"].get_mask(fused, high, low))
