"""NL-CCAM (its non-local block, the rank combination, the network, the localizer, the options, a side-by-side with
the authors' code when ``TEDLOC_NLCCAM_REF`` is set) and the post-hoc CAMs of classifier runs (Grad-CAM ... Score-CAM,
Eigen-CAM) on a tiny CNN and a tiny ViT run: shapes, ranges, parity with pytorch-grad-cam called directly, the target
layer option, and the commands that select them."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from runtimes import CPU

from tedloc.cli import main
from tedloc.errors import OptionError, TedlocError
from tedloc.methods import get_method, load_model
from tedloc.methods.nlccam import NLCCAMConfig, NLCCAMLocalizer, NonLocalBlock, combinational_cams, rank_weights
from tedloc.methods.nlccam.network import build_nlccam_classifier, insert_nonlocal_blocks
from tedloc.methods.nlccam.train import NLCCAMTask
from tedloc.models.classifier import build_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INPUT = 32


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- NL-CCAM: the non-local block


def test_a_new_non_local_block_is_the_identity():
    torch.manual_seed(0)
    block = NonLocalBlock(16)
    x = torch.randn(2, 16, 3, 5)
    for mode in (True, False):
        assert torch.equal(block.train(mode)(x), x)  # the batch norm's weight and bias start at zero


def test_non_local_block_on_a_hand_made_map():
    """8 channels (query and key: 1 channel, reading channel 0), 1x2 positions; value and mix the identity, the
    batch norm the identity (eval, eps 0): out = x + x A^T with A = softmax over j of x0_i * x0_j."""
    block = NonLocalBlock(8).eval()
    with torch.no_grad():
        for conv in (block.query, block.key):
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
            conv.bias.zero_()
        for conv in (block.value, block.mix):
            conv.weight.copy_(torch.eye(8)[:, :, None, None])
            conv.bias.zero_()
        block.bn.weight.fill_(1.0)
    block.bn.eps = 0.0
    x = torch.zeros(1, 8, 1, 2)
    x[0, 0, 0] = torch.tensor([1.0, 2.0])
    x[0, 1, 0] = torch.tensor([3.0, -1.0])
    # energies [[1, 2], [2, 4]]: softmax rows
    a0 = [1 / (1 + math.e), math.e / (1 + math.e)]
    a1 = [math.e ** 2 / (math.e ** 2 + math.e ** 4), math.e ** 4 / (math.e ** 2 + math.e ** 4)]
    torch.testing.assert_close(block.attention(x)[0], torch.tensor([a0, a1]), rtol=0, atol=1e-7)
    expected = x.clone()
    for c, values in ((0, [1.0, 2.0]), (1, [3.0, -1.0])):
        expected[0, c, 0, 0] += values[0] * a0[0] + values[1] * a0[1]
        expected[0, c, 0, 1] += values[0] * a1[0] + values[1] * a1[1]
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-6)


def test_a_block_needs_8_channels():
    with pytest.raises(OptionError, match="at least 8 channels") as error:
        NonLocalBlock(4)
    _one_line(error)


def test_blocks_follow_the_last_stages_and_start_as_the_plain_classifier():
    torch.manual_seed(0)
    plain = build_classifier("tedloc_resnet_tiny", 4, input_size=INPUT).eval()
    torch.manual_seed(0)
    net = build_nlccam_classifier(NLCCAMConfig(input_size=INPUT), 4).eval()
    assert net.nonlocal_stages == ["stages.1", "stages.2"]  # every stage but the first, as the authors' VGG16
    assert isinstance(net.stages[2][-1], NonLocalBlock) and net.ccam == ("quadratic", 0.5)
    x = torch.randn(2, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))
    names = {k for k in net.state_dict()} - {k for k in plain.state_dict()}
    assert all(k.startswith(("stages.1.1.", "stages.2.1.")) for k in names)  # the stages' own names are kept
    for count, stages in ((0, []), (3, ["stages.0", "stages.1", "stages.2"]), (1, ["stages.2"])):
        torch.manual_seed(0)
        assert build_nlccam_classifier(NLCCAMConfig(nonlocal_stages=count), 4).nonlocal_stages == stages


def test_a_module_that_is_no_sequential_is_wrapped():
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert insert_nonlocal_blocks(net, 1) == ["layer4"]
    assert isinstance(net.layer4, torch.nn.Sequential) and isinstance(net.layer4[-1], NonLocalBlock)
    assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_bad_layouts_and_backbones_are_one_line():
    with pytest.raises(OptionError, match=r"nonlocal_stages must be in 0\.\.3 for tedloc_resnet_tiny \(its stages: "
                                          r"stages\.0, stages\.1, stages\.2\), got 4") as error:
        build_nlccam_classifier(NLCCAMConfig(nonlocal_stages=4), 4)
    _one_line(error)
    with pytest.raises(OptionError, match="arch: nlccam needs a CNN .* tedloc_vit_tiny has none") as error:
        build_nlccam_classifier(NLCCAMConfig(arch="tedloc_vit_tiny", input_size=INPUT), 4)
    _one_line(error)


@pytest.mark.parametrize("field, value, message", [
    ("combination", "cubic", "combination must be one of quadratic, linear, t1b1, t1b0, got 'cubic'"),
    ("positive_fraction", 1.5, r"positive_fraction must be in \[0, 1\], got 1.5"),
    ("optimizer", "rmsprop", "optimizer must be one of adam, sgd, adamw, got 'rmsprop'"),
    ("head_lr_ratio", 0.0, "head_lr_ratio must be > 0, got 0.0"),
    ("nonlocal_stages", -1, "nonlocal_stages must be >= 0"),
    ("selection", "best", "selection must be last, loc or pseudo:FILE"),
])
def test_bad_options_are_one_line(field, value, message):
    with pytest.raises(TedlocError, match=message) as error:
        NLCCAMConfig(**{field: value})
    _one_line(error)


def test_a_bad_backbone_fails_before_the_run_folder(synthetic_small, tmp_path, capsys):
    method = get_method("nlccam")
    with pytest.raises(OptionError, match="nonlocal_stages must be in 0..3"):
        method.train(synthetic_small, tmp_path / "run", method.config(nonlocal_stages=5, epochs=1), runtime=CPU)
    assert not (tmp_path / "run").exists()
    assert main(["train", "--method", "nlccam", "--data", str(synthetic_small), "--out", str(tmp_path / "vit"),
                 "--arch", "tedloc_vit_tiny", "--input-size", "32", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arch: nlccam needs a CNN" in err[0], err
    assert not (tmp_path / "vit").exists()


# ---------------------------------------------------------------- NL-CCAM: the combination


def test_rank_weights_are_the_authors_functions():
    assert rank_weights(6, "quadratic", 0.5).tolist() == [1.0, 0.25, 0.0, -0.0, -0.25, -1.0]
    assert rank_weights(4, "quadratic", 0.25).tolist() == [1.0, -0.0, -0.25, -1.0]
    assert rank_weights(3, "quadratic", 1.0).tolist() == [1.0, 0.25, 0.0]
    assert rank_weights(5, "linear").tolist() == [1.0, 0.5, 0.0, -0.5, -1.0]
    # the authors' CUB setting: 100 positive ranks of 200
    w = rank_weights(200, "quadratic", 0.5)
    assert (w[:99] > 0).all() and w[99] == 0 and w[100] == 0 and (w[101:] < 0).all() and w[-1] == -1


def test_combinational_cams_on_hand_made_features():
    """F: 2 channels on 1x2 positions (channel 0 = [1, 0], channel 1 = [0, 1]), so CAM(c) = W[c]; the logits rank
    the classes 1, 2, 0, 3."""
    features = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    logits = torch.tensor([[0.1, 0.5, 0.3, -1.0]])

    def ccam(combination, classes=None, fraction=0.5):
        return combinational_cams(features, weight, logits, classes, combination, fraction)[0, 0].tolist()

    assert ccam("quadratic") == [-2.0, 2.0]  # CAM(1) + 0 CAM(2) - 0 CAM(0) - CAM(3)
    assert ccam("quadratic", torch.tensor([3])) == [-2.0, 2.0]  # the ranking decides, not the class
    assert ccam("quadratic", fraction=0.75) == [0.25, 1.25]  # ranks 1, 0.25, 0, -0: CAM(1) + CAM(2) / 4
    np.testing.assert_allclose(ccam("linear"), [-2.0, 7 / 3], rtol=0, atol=1e-6)  # 1, 1/3, -1/3, -1
    assert ccam("t1b0") == [0.0, 1.0] and ccam("t1b0", torch.tensor([2])) == [1.0, 1.0]
    assert ccam("t1b1") == [-2.0, 2.0] and ccam("t1b1", torch.tensor([0])) == [-1.0, 1.0]  # minus the last: 3
    # ties: the lower class first (0 before 1: the quadratic weights 1, 0, 0, -1 give CAM(0) - CAM(3))
    tied = combinational_cams(features, weight, torch.zeros(1, 4), None, "quadratic", 0.5)
    assert tied[0, 0].tolist() == [-1.0, 1.0]
    with pytest.raises(OptionError, match="combination must be one of"):
        combinational_cams(features, weight, logits, None, "cubic")


def test_the_localizer_map_is_the_combination_of_the_networks_cams():
    torch.manual_seed(0)
    net = build_nlccam_classifier(NLCCAMConfig(input_size=INPUT), 4)
    loc = NLCCAMLocalizer(net, ["a", "b", "c", "d"], runtime=CPU)
    x = torch.randn(3, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(2))
    scores, maps = loc.predict(x)
    with torch.no_grad():
        features = net.forward_features(x)
        logits = net.forward_head(features)
    assert torch.equal(scores, logits.softmax(1)) and maps.shape == (3, 4, 4)
    assert torch.equal(maps, combinational_cams(features, net.fc.weight, logits, None, "quadratic", 0.5))
    assert loc.map_kinds[:2] == ("ccam", "cam") and "ccam" not in loc.class_map_kinds
    classes = torch.tensor([0, 1, 2])
    _, all_maps = loc.predict_maps(x, ("ccam", "cam", "ccam@pred", "gradcam"), classes)
    assert torch.equal(all_maps["ccam"], maps) and torch.equal(all_maps["ccam@pred"], maps)
    # t1b0: the plain CAM of the class (tedloc's CAM is the channel mean: C times smaller)
    net.ccam = ("t1b0", 0.5)
    assert "ccam" in loc.class_map_kinds
    _, t1b0 = loc.predict_maps(x, ("ccam", "cam"), classes)
    torch.testing.assert_close(t1b0["ccam"], t1b0["cam"] * net.num_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loc.cams(x, classes), t1b0["ccam"], rtol=0, atol=0)


def test_the_head_learns_at_head_lr_ratio_times_the_backbone():
    from tedloc.engine.run_folder import set_step_lr

    net = build_nlccam_classifier(NLCCAMConfig(input_size=INPUT), 4)
    config = NLCCAMConfig(lr=0.002, head_lr_ratio=10.0, lr_step=2, lr_gamma=0.5)
    optimizer = NLCCAMTask.make_optimizer(SimpleNamespace(config=config), net)
    assert isinstance(optimizer, torch.optim.Adam)
    backbone, head = optimizer.param_groups
    assert len(head["params"]) == 2 and head["params"][0] is net.fc.weight
    assert len(backbone["params"]) + 2 == len(list(net.parameters()))
    assert set_step_lr(optimizer, config.lr, config.lr_gamma, config.lr_step, 2) == 0.001
    assert backbone["lr"] == 0.001 and head["lr"] == pytest.approx(0.01, rel=1e-12)


# ---------------------------------------------------------------- NL-CCAM: side by side with the authors' code

REF = os.environ.get("TEDLOC_NLCCAM_REF")


def _reference_modules():
    """The authors' ``model_cub`` and ``IoU_check_cub_5`` (Yangseung/NL-CCAM), imported from the checkout (its data
    and plotting imports need torchvision, scipy and matplotlib; opencv for its maps)."""
    sys.path.insert(0, REF)
    try:
        import IoU_check_cub_5
        import model_cub
    finally:
        sys.path.remove(REF)
    return model_cub, IoU_check_cub_5


@pytest.mark.skipif(not REF, reason="set TEDLOC_NLCCAM_REF to a checkout of Yangseung/NL-CCAM (needs opencv)")
def test_side_by_side_with_the_authors_block_and_combinations(monkeypatch):
    model_cub, evaluation = _reference_modules()
    monkeypatch.setattr(np, "product", np.prod, raising=False)  # gone from numpy 2; their box search calls it
    torch.manual_seed(0)
    theirs = model_cub.Self_Attn(64).eval()
    with torch.no_grad():  # a trained-like block: the batch norm away from its zero start
        theirs.bn.weight.normal_()
        theirs.bn.bias.normal_()
        theirs.bn.running_mean.normal_()
        theirs.bn.running_var.uniform_(0.5, 2.0)
    ours = NonLocalBlock(64).eval()
    names = {"query_conv": "query", "key_conv": "key", "value_conv": "value", "mix_conv": "mix", "bn": "bn"}
    ours.load_state_dict({names[k.split(".")[0]] + k[k.index("."):]: v for k, v in theirs.state_dict().items()})
    x = torch.randn(2, 64, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    # the combinations: their returnCAM_ (200 classes, a 14x14 map resized to 224x224 as uint8)
    import cv2

    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, 32, 14, 14)).astype(np.float32)
    weight = rng.normal(size=(200, 32)).astype(np.float32)
    logits = torch.from_numpy(rng.normal(size=(1, 200)).astype(np.float32))
    order = logits.sort(1, True)[1][0].numpy()
    for function, classes in (("quadratic", 7), ("linear", 7), ("t1b1", 7), ("t1b0", 7)):
        [their_maps], _ = evaluation.returnCAM_(features, weight, [classes], order, None, 0, 0.12, 100, function)
        ours = combinational_cams(torch.from_numpy(features), torch.from_numpy(weight), logits,
                                  torch.tensor([classes]), function, 0.5)[0].double().numpy()
        ours = ours - ours.min()
        ours = cv2.resize(np.uint8(255 * (ours / ours.max())), (224, 224))
        assert np.abs(ours.astype(int) - their_maps.astype(int)).max() <= 1, function


# ---------------------------------------------------------------- post-hoc CAMs of classifier runs

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from tedloc.pseudolabels.cam_family import CLASS_FREE_CAMS, GRADIENT_CAMS, SCORE_CAM_BATCH  # noqa: E402

LIBRARY = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
           "scorecam": "ScoreCAM", "eigencam": "EigenCAM"}  # smoothgradcam++: tests/test_cam_family.py


@pytest.fixture(scope="module")
def vit_run(synthetic_small, tmp_path_factory) -> Path:
    """A CAM run of tedloc_vit_tiny on the synthetic set: 32x32 inputs (a 4x4 patch grid), one epoch."""
    out = tmp_path_factory.mktemp("vit_run") / "run"
    cam = get_method("cam")
    cam.train(synthetic_small, out, cam.config(arch="tedloc_vit_tiny", input_size=INPUT, epochs=1, batch_size=8,
                                               lr=0.01, optimizer="adamw"), runtime=CPU)
    return out


@pytest.fixture(scope="module")
def runs(cam_run_32, vit_run) -> dict[str, Path]:
    """The tiny CNN and ViT runs."""
    return {"cnn": cam_run_32, "vit": vit_run}


@pytest.fixture(scope="module")
def images(synthetic_small) -> torch.Tensor:
    """Three test images at the runs' eval view (32x32, ImageNet normalisation)."""
    from tedloc.data import load_dataset
    from tedloc.data.images import load_image
    from tedloc.data.preprocessing import Preprocessing

    split = load_dataset(synthetic_small)["test"]
    pre = Preprocessing(INPUT)
    return torch.stack([pre.eval_input(load_image(split.image_path(i))) for i in range(3)])


def _vit_tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """The pytorch-grad-cam tutorial's ViT reshape: the class token dropped, 4x4 patches, channels first."""
    grid = tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[2])
    return grid.permute(0, 3, 1, 2)


def _library_maps(network, kind, layer, images, classes, reshape=None) -> torch.Tensor:
    with getattr(pytorch_grad_cam, LIBRARY[kind])(model=network, target_layers=[layer],
                                                  reshape_transform=reshape) as cam:
        if kind == "scorecam":
            cam.batch_size = SCORE_CAM_BATCH
        return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes]))


@pytest.mark.parametrize("arch", ["cnn", "vit"])
@pytest.mark.parametrize("kind", sorted(LIBRARY))
def test_each_map_equals_pytorch_grad_cam_called_directly(runs, images, arch, kind):
    localizer = load_model(runs[arch], runtime=CPU, map_kind=kind)
    network = localizer.model
    classes = torch.tensor([2, 0, 3])
    _, maps = localizer.predict_maps(images, (kind,), classes)
    ours = maps[kind]
    assert ours.shape == (3, INPUT, INPUT) and ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert ours.min() >= 0 and ours.max() <= 1 and (ours.amax(dim=(1, 2)) > 0.99).all()
    if arch == "cnn":
        layer, reshape = network.stages[2], None  # the last conv stage
    else:
        layer, reshape = network.blocks[-1].norm1, _vit_tokens_to_grid  # the last block's norm
    assert torch.equal(ours, _library_maps(network, kind, layer, images, classes, reshape).float())
    # predict: the map of the predicted classes, batched
    scores, predicted_maps = localizer.predict(images)
    assert torch.equal(predicted_maps, _library_maps(network, kind, layer, images, scores.argmax(1), reshape).float())


def test_eigencam_is_class_free_and_the_others_are_not(runs, images):
    localizer = load_model(runs["cnn"], runtime=CPU)
    assert set(CLASS_FREE_CAMS) == {"eigencam"}
    assert "eigencam" in localizer.map_kinds and "eigencam" not in localizer.class_map_kinds
    assert "scorecam" in localizer.class_map_kinds
    _, a = localizer.predict_maps(images, ("eigencam", "scorecam"), torch.tensor([0, 0, 0]))
    _, b = localizer.predict_maps(images, ("eigencam", "scorecam"), torch.tensor([1, 1, 1]))
    assert torch.equal(a["eigencam"], b["eigencam"]) and not torch.equal(a["scorecam"], b["scorecam"])


@pytest.mark.parametrize("arch, path, module", [("cnn", "stages.1", lambda n: n.stages[1]),
                                                ("vit", "blocks.0.norm1", lambda n: n.blocks[0].norm1),
                                                ("vit", "patch_embed.proj", lambda n: n.patch_embed.proj)])
def test_a_target_layer_by_module_path(runs, images, arch, path, module):
    localizer = load_model(runs[arch], runtime=CPU, map_kind="gradcam", target_layer=path)
    network = localizer.model
    classes = torch.tensor([1, 2, 3])
    _, maps = localizer.predict_maps(images, ("gradcam",), classes)
    reshape = _vit_tokens_to_grid if arch == "vit" and path.startswith("blocks") else None
    assert torch.equal(maps["gradcam"], _library_maps(network, "gradcam", module(network), images, classes,
                                                      reshape).float())
    _, default = load_model(runs[arch], runtime=CPU).predict_maps(images, ("gradcam",), classes)
    assert not torch.equal(maps["gradcam"], default["gradcam"])


def test_a_wrong_layer_name_is_one_line_listing_close_names(runs, synthetic_small, tmp_path, capsys):
    with pytest.raises(TedlocError) as error:
        load_model(runs["cnn"], runtime=CPU, target_layer="stage.2")
    message = _one_line(error)
    assert message.startswith(f"{runs['cnn']}: target layer 'stage.2' is no module of TinyResNet; close names: ")
    assert "stages.2" in message
    with pytest.raises(TedlocError, match="close names: .*blocks.1.norm1") as error:
        load_model(runs["vit"], runtime=CPU, target_layer="blocks.1.norm")
    _one_line(error)
    capsys.readouterr()
    for argv in (["evaluate", "--run", str(runs["cnn"]), "--data", str(synthetic_small), "--map", "scorecam"],
                 ["cams", "--run", str(runs["cnn"]), "--data", str(synthetic_small), "--source", "scorecam",
                  "--out", str(tmp_path / "c")],
                 ["predict", "--run", str(runs["cnn"]), "--threshold", "0.5",
                  str(synthetic_small / "images" / "x.png")]):
        assert main([*argv, "--target-layer", "nothing.here", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "target layer 'nothing.here' is no module of TinyResNet" in err[0], (argv, err)
    assert not (tmp_path / "c").exists()


def test_evaluate_scores_a_post_hoc_map_like_the_others(runs, synthetic_small, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(runs["vit"]), "--data", str(synthetic_small), "--map", "eigencam",
                 "--json", str(out), "--device", "cpu", "--batch-size", "8"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["map"] == "eigencam" and 0 <= metrics["MaxBoxAcc"] <= 100 and "PxAP" in metrics
    assert "eigencam@pred" not in metrics["maps"] and {"cam", "cam@pred"} <= set(metrics["maps"])
    from tedloc.data import load_dataset
    from tedloc.eval.localizer_eval import evaluate_localizer

    alone = evaluate_localizer(load_model(runs["vit"], runtime=CPU, map_kind="eigencam"),
                               load_dataset(synthetic_small)["test"], batch_size=8)
    assert alone["MaxBoxAcc"] == metrics["MaxBoxAcc"]


@pytest.mark.parametrize("kind", ["scorecam", "eigencam", "gradcam++"])
def test_cams_caches_each_post_hoc_map_as_a_pseudo_label_source(runs, synthetic_small, tmp_path, kind):
    from tedloc.methods.run_maps import compute_run_map_cache
    from tedloc.pseudolabels import MAP_SOURCES

    assert set(GRADIENT_CAMS) <= set(MAP_SOURCES.names())
    assert main(["cams", "--run", str(runs["cnn"]), "--data", str(synthetic_small), "--split", "val", "--source",
                 kind, "--out", str(tmp_path / "c"), "--device", "cpu", "--target-layer", "stages.2"]) == 0
    from tedloc.pseudolabels.map_cache import MapCache

    cache = MapCache(tmp_path / "c")
    direct = compute_run_map_cache(runs["cnn"], synthetic_small, "val", tmp_path / "d", method=kind, runtime=CPU,
                                   batch_size=4)
    assert direct.complete and direct.size == (INPUT // 4, INPUT // 4) and direct.source["method"] == kind
    maps = direct.get(np.arange(len(direct)))
    assert maps.min() >= 0 and maps.max() <= 1 and (maps.amax(dim=(1, 2)) > 0.99).all()
    # stages.2 is the default layer: the same maps (float16) whatever the batch
    torch.testing.assert_close(cache.get(np.arange(len(cache))), maps, rtol=0, atol=2e-3)


def test_predict_with_a_post_hoc_map(runs, synthetic_small, tmp_path, capsys):
    from tedloc.data import load_dataset

    split = load_dataset(synthetic_small)["test"]
    paths = [str(split.image_path(i)) for i in range(2)]
    assert main(["predict", "--run", str(runs["vit"]), *paths, "--map", "scorecam", "--threshold", "0.5", "--out",
                 str(tmp_path / "p"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "p" / f"{Path(paths[0]).stem}.json").read_text())
    saved = np.load(tmp_path / "p" / record["map"])
    assert saved.min() >= 0 and saved.max() <= 1
