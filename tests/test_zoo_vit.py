"""TS-CAM, SCM and SAT (tscam, scm, sat): each method-specific part on hand-made inputs with exact values, the
ViT run block by block against timm's own forward, the options refused in one line, and (when a checkout of
the authors' code is given) side by side with the authors' modules.

The side-by-side tests import the authors' model files at test time only (never copied into tedloc), from a
checkout given by ``TEDLOC_TSCAM_REF`` (vasgaowei/TS-CAM), ``TEDLOC_SCM_REF`` (hbai98/SCM; needs ``einops``) or
``TEDLOC_SAT_REF`` (wpy1999/SAT; its unused ``skimage`` import is stubbed). The same random weights (attention
sharpened so that the maps are not flat) go into both networks; the maps, logits and losses are compared.
"""
from __future__ import annotations

import importlib
import math
import os
import sys
import types
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tedloc.errors import OptionError
from tedloc.methods import get_method
from tedloc.methods.registry import SHARED_SEARCH_SPACE
from tedloc.methods.vit_wsol import parameter_groups
from tedloc.models.sat import SATNetwork, area_of, batch_area_loss, gaussian_kernel, normalization_term, spatial_gate
from tedloc.models.scm import (SCMNetwork, SpatialCalibration, diffusion_matrix, grid_laplacian,
                               newton_schulz_inverse)
from tedloc.models.tscam import TSCAMNetwork
from tedloc.models.vit_attention import last_block_attention
from tedloc.models.vit_wsol import ViTSemanticNetwork, attention_forward, coupled_maps, min_max_norm
from runtimes import CPU

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _vit(size=16, num_classes=3, **kwargs):
    import timm

    import tedloc.models.tiny_vit  # noqa: F401

    torch.manual_seed(0)
    return timm.create_model("tedloc_vit_tiny", num_classes=num_classes, img_size=size, **kwargs)


# --- the ViT run block by block ---------------------------------------------------------------------------------

def test_blocks_are_timms_forward():
    vit = _vit(32)
    vit.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = vit.forward_features(x)
        net = ViTSemanticNetwork(vit, 3).eval()
        tokens, weights = net.run_blocks(net.embed(x))
    assert torch.allclose(tokens, expected, atol=1e-5)
    assert len(weights) == 4 and torch.allclose(weights[-1], last_block_attention(vit, x), atol=1e-6)


def test_attention_key_gate_by_hand():
    from timm.layers import Attention

    attn = Attention(2, num_heads=1, qkv_bias=False)
    with torch.no_grad():
        attn.qkv.weight.zero_()  # q = k = 0: uniform weights 1/3
        attn.qkv.weight[4:6] = torch.eye(2)  # v = x
        attn.proj.weight.copy_(torch.eye(2))
        attn.proj.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])
    gate = torch.tensor([0.5, 1.0, 0.0]).reshape(1, 1, 1, 3)
    out, weights, logits = attention_forward(attn, x, lambda lg: gate)
    assert torch.equal(logits, torch.zeros(1, 1, 3, 3)) and torch.allclose(weights, torch.full((1, 1, 3, 3), 1 / 3))
    # every query: (0.5 * (1, 0) + 1 * (0, 2) + 0 * (3, 3)) / 3
    assert torch.allclose(out, torch.tensor([0.5, 2.0]).div(3).expand(1, 3, 2))
    assert torch.allclose(attention_forward(attn, x)[0], torch.tensor([4.0, 5.0]).div(3).expand(1, 3, 2))


# --- TS-CAM ------------------------------------------------------------------------------------------------------

def test_tscam_attention_and_coupling_by_hand():
    net = TSCAMNetwork(_vit(16), 2)  # 8x8 patches: a 2x2 grid, tokens [cls, p0, p1, p2, p3]
    w1 = torch.zeros(1, 2, 5, 5)
    w1[0, 0, 0] = torch.tensor([0.0, 0.4, 0.3, 0.2, 0.1])
    w1[0, 1, 0] = torch.tensor([0.0, 0.0, 0.1, 0.2, 0.7])
    w2 = torch.zeros(1, 2, 5, 5)
    w2[0, :, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0])
    attention = net.class_attention([w1, w2], (2, 2))
    # head mean (0.2, 0.2, 0.2, 0.4) + (0.5, 0, 0, 0)
    assert torch.allclose(attention, torch.tensor([[[[0.7, 0.2], [0.2, 0.4]]]]))
    semantic = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]], [[0.5, 0.5], [0.5, 3.0]]]])
    coupled = coupled_maps(attention, semantic)
    assert torch.allclose(coupled, torch.tensor([[[[0.7, -0.2], [0.4, 0.0]], [[0.35, 0.1], [0.1, 1.2]]]]))
    assert torch.allclose(TSCAMNetwork.logits_of(semantic), torch.tensor([[0.5, 1.125]]))


def test_tscam_localizer_maps_of_classes():
    method = get_method("tscam")
    net = method.build(method.config(arch="tedloc_vit_tiny", input_size=16, pretrained=False), 3, {})
    localizer = method.localizer(net, ["a", "b", "c"], runtime=CPU)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, maps = net.eval().localization(x)
    scores, out = localizer.predict_maps(x, ("tscam", "tscam@pred", "attention", "semantic"),
                                         torch.tensor([2, 0]))
    pred = logits.argmax(1)
    assert torch.allclose(scores, logits.softmax(1))
    assert torch.equal(out["tscam"], torch.stack([maps["tscam"][0, 2], maps["tscam"][1, 0]]))
    assert torch.equal(out["tscam@pred"], maps["tscam"][torch.arange(2), pred])
    assert torch.equal(out["attention"], maps["attention"][:, 0]) and out["semantic"].shape == (2, 2, 2)
    assert torch.equal(localizer.predict(x)[1], out["tscam@pred"])
    assert localizer.map_kinds == ("tscam", "attention", "semantic") and localizer.class_map_kinds == ("tscam",
                                                                                                      "semantic")


# --- SCM ---------------------------------------------------------------------------------------------------------

def test_grid_laplacian_by_hand():
    expected = torch.tensor([[2.0, -1, -1, 0], [-1, 2, 0, -1], [-1, 0, 2, -1], [0, -1, -1, 2]])
    assert torch.equal(grid_laplacian(2, 2), expected)
    assert torch.equal(grid_laplacian(1, 3), torch.tensor([[1.0, -1, 0], [-1, 2, -1], [0, -1, 1]]))


def test_newton_schulz_by_hand():
    x = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    # Y0 = 0.002 X^T = diag(0.004, 0.008); Y1 = Y0 (2I - X Y0) = diag(0.004 * 1.992, 0.008 * 1.968)
    assert torch.allclose(newton_schulz_inverse(x, 1), torch.diag(torch.tensor([0.007968, 0.015744])), atol=1e-9)
    near = torch.tensor([[1.0, 0.2], [0.1, 1.0]])
    assert torch.allclose(newton_schulz_inverse(near, 12, alpha=0.5), torch.linalg.inv(near), atol=1e-5)


def test_scm_diffusion_step_by_hand():
    # two patches side by side, semantic vectors (1, 0) and (0, 1): S = I, L = [[1, -1], [-1, 1]],
    # L * (S - 1) = [[0, 1], [1, 0]], one Newton-Schulz step: 0.002 * 1.998 [[0, 1], [1, 0]]
    similarity = torch.eye(2)[None]
    diffusion = diffusion_matrix(similarity, grid_laplacian(1, 2), torch.ones(1), 1)
    assert torch.allclose(diffusion, torch.tensor([[[0.0, 0.003996], [0.003996, 0.0]]]), atol=1e-9)
    module = SpatialCalibration(iterations=1)
    x = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (B, K=2, 1, 2)
    cam = torch.tensor([[1.0, 0.0]])
    # F cam = (0, 0.003996), / (0.5 * 1), tanhshrink, min-max -> (0, 1): patch 1 doubled, cam + (0, 1)
    new_x, new_cam = module(x, cam)
    assert torch.allclose(new_x, torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]]))
    assert torch.allclose(new_cam, torch.tensor([[1.0, 1.0]]))
    assert [n for n, _ in module.named_parameters()] == ["threshold", "rate"]


def test_min_max_norm_by_hand():
    assert torch.allclose(min_max_norm(torch.tensor([[2.0, 4.0, 3.0]])), torch.tensor([[0.0, 1.0, 0.5]]))
    assert torch.equal(min_max_norm(torch.tensor([[5.0, 5.0]])), torch.zeros(1, 2))


def test_scm_calibration_only_in_training():
    net = SCMNetwork(_vit(16), 3, layers=2, first_iterations=3, iterations=2)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        semantic, weights, grid = net.eval().features(x)
        plain = net.logits_of(semantic)
        assert torch.allclose(net(x), plain)
        trained = net.train()(x)
        _, maps = net.eval().localization(x)
    assert not torch.allclose(trained, plain)
    attention = net.class_attention(weights, grid).flatten(1)
    normed = (attention - attention.min(1, keepdim=True).values)
    normed = normed / normed.max(1, keepdim=True).values
    assert torch.allclose(maps["attention"].flatten(1), normed)
    assert torch.allclose(maps["scm"], normed.reshape(2, 1, 2, 2) * semantic)
    assert [m.iterations for m in net.calibration] == [3, 2]


# --- SAT ---------------------------------------------------------------------------------------------------------

def test_sat_gate_by_hand():
    logits = torch.zeros(1, 2, 3, 3)
    logits[0, 0, -1] = torch.tensor([0.0, 2.0, -2.0])
    logits[0, 1, -1] = torch.tensor([2.0, 0.0, 2.0])
    expected = torch.sigmoid(torch.tensor([1.0, 1.0, 0.0])).reshape(1, 1, 1, 3)
    assert torch.allclose(spatial_gate(logits), expected)


def test_sat_kernel_and_losses_by_hand():
    kernel = gaussian_kernel()
    # the authors' get_kernel(3, 6) (scipy's normal cdf), to 1e-7
    assert torch.allclose(kernel, torch.tensor([[0.00262846, 0.0460116, 0.00262846], [0.0460116, 0.80543974,
                                                                                      0.0460116],
                                                [0.00262846, 0.0460116, 0.00262846]]), atol=1e-7)
    maps = torch.zeros(2, 1, 3, 3)
    maps[0, 0, 1, 1] = 1.0  # blurred: the kernel itself
    maps[1] = 0.5
    assert torch.allclose(area_of(maps), torch.tensor([1 / 9, 0.5]))
    k = kernel.double()
    one = float((k * (1 - k)).mean())
    # an all-0.5 map blurred with zero padding: 0.5 x the kernel's sum over the window inside the image
    inside = torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.float64), k[None, None], padding=1) * 0.5
    two = float((inside * (1 - inside)).mean())
    assert torch.allclose(normalization_term(maps, kernel), torch.tensor([one, two], dtype=torch.float32), atol=1e-7)
    assert math.isclose(float(batch_area_loss(torch.tensor([0.1, 0.3]), 0.25)), 0.05, abs_tol=1e-7)
    assert math.isclose(float(batch_area_loss(torch.tensor([0.4, 0.6]), 0.25)), 0.25, abs_tol=1e-7)


def test_sat_token_map_is_the_gates_of_the_last_blocks():
    net = SATNetwork(_vit(16), 3, gated_blocks=2).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    seen = []
    original = net.run_blocks

    def spy(tokens, key_gate_of=None):
        gates = [key_gate_of(i) for i in range(4)]
        assert [g is None for g in gates] == [True, True, False, False]  # only the last 2 blocks are gated

        def record(i):
            if gates[i] is None:
                return None
            return lambda logits: seen.append(gates[i](logits)) or seen[-1]
        return original(tokens, record)

    net.run_blocks = spy
    with torch.no_grad():
        _, maps = net.localization(x)
    expected = (seen[0] + seen[1])[:, 0, 0, 1:-1] / 2  # patches only: not the class token, not the token itself
    assert torch.allclose(maps["sat"].flatten(1), expected) and maps["sat"].shape == (2, 1, 2, 2)
    net.train()
    logits, areas, norms = net(x)
    assert areas.shape == norms.shape == (2,) and torch.all((areas > 0) & (areas < 1))
    with pytest.raises(OptionError, match=r"sat_blocks must be 1-4"):
        SATNetwork(_vit(16), 3, gated_blocks=5)


# --- options, search spaces, optimizer groups --------------------------------------------------------------------

def test_options_refused_in_one_line(tmp_path, synthetic_small):
    with pytest.raises(OptionError, match=r"arch 'resnet18': TS-CAM needs a timm ViT"):
        get_method("tscam").config(arch="resnet18", pretrained=False)
    with pytest.raises(OptionError, match=r"arch 'tedloc_resnet_tiny': SCM needs a timm ViT"):
        get_method("scm").config(arch="tedloc_resnet_tiny")
    with pytest.raises(OptionError, match=r"area_threshold must be in \[0, 1\], got 1.5"):
        get_method("sat").config(area_threshold=1.5)
    with pytest.raises(OptionError, match=r"scm_layers must be at least 1, got 0"):
        get_method("scm").config(scm_layers=0)
    with pytest.raises(OptionError, match=r"drop_path must be in \[0, 1\)"):
        get_method("tscam").config(drop_path=1.0)
    sat = get_method("sat")
    with pytest.raises(OptionError, match=r"sat_blocks must be 1-4"):  # tedloc_vit_tiny has 4 blocks
        sat.train(synthetic_small, tmp_path / "run", sat.config(arch="tedloc_vit_tiny", input_size=32,
                                                                pretrained=False, sat_blocks=6), runtime=CPU)
    assert not (tmp_path / "run").exists()


def test_search_spaces():
    assert get_method("tscam").search_space == SHARED_SEARCH_SPACE
    assert get_method("scm").search_space == SHARED_SEARCH_SPACE
    assert get_method("sat").search_space == {**SHARED_SEARCH_SPACE, "area_threshold": ("uniform", 0.0, 1.0)}


def test_defaults_are_the_authors():
    tscam, scm, sat = (get_method(n).config() for n in ("tscam", "scm", "sat"))
    assert (tscam.arch, tscam.input_size, tscam.optimizer, tscam.lr, tscam.weight_decay, tscam.drop_path,
            tscam.batch_size, tscam.epochs) == ("deit_small_patch16_224", 224, "adamw", 5e-5, 0.05, 0.1, 128, 60)
    assert (scm.batch_size, scm.epochs, scm.scm_layers, scm.scm_first_iterations, scm.scm_iterations) == (16, 30, 4,
                                                                                                           16, 4)
    assert (sat.lr, sat.batch_size, sat.epochs, sat.area_threshold, sat.sat_blocks) == (1e-4, 256, 30, 0.25, 3)


def test_parameter_groups():
    net = SATNetwork(_vit(16), 3)
    decay, no_decay = parameter_groups(net, 0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"loc_token", "loc_embed", "vit.cls_token", "vit.pos_embed", "head.bias", "vit.norm.weight"} <= skipped
    assert {names[id(p)] for p in decay["params"]} >= {"head.weight", "vit.blocks.0.attn.qkv.weight"}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    scm = SCMNetwork(_vit(16), 3, layers=1)
    assert {"calibration.0.threshold", "calibration.0.rate"} <= {n for n, p in scm.named_parameters()
                                                                 if any(p is q for q in
                                                                        parameter_groups(scm, 0.1)[1]["params"])}


def test_sat_trains_and_logs_its_losses(tmp_path, synthetic_small):
    sat = get_method("sat")
    history = sat.train(synthetic_small, tmp_path / "run", sat.config(
        arch="tedloc_vit_tiny", input_size=32, pretrained=False, epochs=1, batch_size=8, lr=1e-3,
        selection="last"), runtime=CPU)
    row = history[0]
    assert {"train_loss", "train_area_loss", "train_norm_loss", "train_area", "val_top1"} <= set(row)
    assert 0 <= row["train_area"] <= 1 and row["train_norm_loss"] >= 0


# --- side by side with the authors' modules (gated) ---------------------------------------------------------------

def _package(name: str, folder: Path) -> None:
    """An empty package ``name`` whose modules are ``folder``'s files (its ``__init__`` bypassed)."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module


def _sharpen(state: dict, factor: float = 8.0) -> dict:
    """Scale the q and k projections so that the attention is far from uniform."""
    out = dict(state)
    for key, value in state.items():
        if key.endswith("attn.qkv.weight"):
            dim = value.shape[1]
            out[key] = torch.cat([value[:2 * dim] * factor, value[2 * dim:]])
    return out


def _ours_to_theirs(state: dict) -> dict:
    return {k.removeprefix("vit."): v for k, v in state.items()}


def _tiny_vit(img_size: int, depth: int):
    from timm.models.vision_transformer import VisionTransformer  # not by name: the references re-register names

    torch.manual_seed(0)
    return VisionTransformer(img_size=img_size, patch_size=16, num_classes=5, embed_dim=48, depth=depth, num_heads=3)


@pytest.fixture
def timm_registry():
    """timm's model registry as it was before the test: the authors' files register models under timm's names."""
    import copy

    import timm.models._registry as registry

    saved = {k: copy.deepcopy(v) for k, v in vars(registry).items() if not k.startswith("__") and
             isinstance(v, (dict, set))}
    yield
    for name, value in saved.items():
        current = getattr(registry, name)
        current.clear()
        current.update(value)


_ARGS = dict(patch_size=16, embed_dim=48, num_heads=3, mlp_ratio=4, qkv_bias=True, num_classes=5)


@pytest.mark.skipif(not os.environ.get("TEDLOC_TSCAM_REF"), reason="set TEDLOC_TSCAM_REF to a vasgaowei/TS-CAM checkout")
@pytest.mark.usefixtures("timm_registry")
def test_tscam_matches_the_authors():
    _package("tscam_ref", Path(os.environ["TEDLOC_TSCAM_REF"]) / "lib" / "models")
    ref = importlib.import_module("tscam_ref.deit")
    ours = TSCAMNetwork(_tiny_vit(64, 3), 5).eval()
    theirs = ref.TSCAM(img_size=64, depth=3, norm_layer=partial(nn.LayerNorm, eps=1e-6), **_ARGS).eval()
    state = _sharpen(ours.state_dict())
    ours.load_state_dict(state)
    theirs.load_state_dict(_ours_to_theirs(state))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, maps = ours.localization(x)
        ref_logits, ref_cams = theirs(x, return_cam=True)
    assert maps["attention"].std() > 0.1 * maps["attention"].mean()  # not a flat attention
    assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(maps["tscam"], ref_cams, atol=1e-5)
    theirs.train()
    assert torch.allclose(ours.train()(x), theirs(x), atol=1e-5)


@pytest.mark.skipif(not os.environ.get("TEDLOC_SCM_REF"), reason="set TEDLOC_SCM_REF to a hbai98/SCM checkout "
                                                                  "(needs einops)")
@pytest.mark.usefixtures("timm_registry")
def test_scm_matches_the_authors(monkeypatch):
    import timm.layers.classifier

    monkeypatch.setitem(sys.modules, "timm.models.layers.classifier", timm.layers.classifier)  # moved in timm 0.9
    _package("scm_ref", Path(os.environ["TEDLOC_SCM_REF"]) / "lib" / "models")
    ref = importlib.import_module("scm_ref.deit")
    ours = SCMNetwork(_tiny_vit(224, 2), 5).eval()  # the authors' modules are made for a 14x14 grid
    theirs = ref.SCM(img_size=224, depth=2, norm_layer=partial(nn.LayerNorm, eps=1e-6), **_ARGS).eval()
    state = _sharpen(ours.state_dict())
    for i in range(4):  # learnable values away from their initial ones
        state[f"calibration.{i}.threshold"] = torch.tensor([0.4 + 0.1 * i])
        state[f"calibration.{i}.rate"] = torch.tensor([0.9 + 0.05 * i])
    ours.load_state_dict(state)
    theirs_state = {k.replace(".threshold", ".thred").replace(".rate", ".fuse._loss_rate").replace(
        "calibration.", "layers."): v for k, v in _ours_to_theirs(state).items()}
    theirs.load_state_dict(theirs_state)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits, maps = ours.localization(x)
        ref_logits, predict, pred_cam, pred_semantic = theirs(x)
        assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(maps["scm"], predict, atol=1e-5)
        assert torch.allclose(maps["attention"], pred_cam, atol=1e-5)
        ours.train()
        theirs.train()
        assert torch.allclose(ours(x), theirs(x), atol=1e-4)


@pytest.mark.skipif(not os.environ.get("TEDLOC_SAT_REF"), reason="set TEDLOC_SAT_REF to a wpy1999/SAT checkout")
@pytest.mark.usefixtures("timm_registry")
def test_sat_matches_the_authors(monkeypatch):
    root = Path(os.environ["TEDLOC_SAT_REF"])
    monkeypatch.syspath_prepend(str(root))  # its model imports utils.* from the checkout's root
    for name in ("skimage", "skimage.measure"):  # imported, never called by the model
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["skimage"].measure = sys.modules["skimage.measure"]
    _package("sat_ref", root / "Model")
    ref = importlib.import_module("sat_ref.SAT")
    ours = SATNetwork(_tiny_vit(224, 12), 5, gated_blocks=3).eval()  # the authors': 12 blocks, a 14x14 grid
    theirs = ref.SAT(img_size=224, depth=12, norm_layer=partial(nn.LayerNorm, eps=1e-6), **_ARGS).eval()
    state = _sharpen(ours.state_dict(), 4.0)
    ours.load_state_dict(state)
    theirs.load_state_dict({**_ours_to_theirs(state), "weight": theirs.weight})
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits, maps = ours.localization(x)
        ref_logits, ref_map = theirs(x, phase="test")
        assert maps["sat"].std() > 0.01
        assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(maps["sat"][:, 0], ref_map, atol=1e-6)
        ours.train()
        theirs.train()
        for a, b in zip(ours(x), theirs(x, phase="train")):
            assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(theirs.weight[0, 0], gaussian_kernel())
