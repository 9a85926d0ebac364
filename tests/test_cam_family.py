"""The CAM family (Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, XGrad-CAM, LayerCAM) through the grad-cam package, as
maps of CAM runs: shapes and ranges, parity with pytorch_grad_cam called directly, seeded noise, ``predict_maps``,
``load_model(map_kind=...)``, ``tedloc evaluate --map``, and unknown kinds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from runtimes import CPU

from tedloc.cli import main
from tedloc.errors import TedlocError
from tedloc.methods import load_model
from tedloc.models.localizer import PRED_SUFFIX

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tedloc.pseudolabels.cam_family import GRADIENT_CAMS, gradient_cams
from tedloc.pseudolabels.gradcam import default_target_layer

INPUT = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(cam_run_32) -> Path:
    """A CAM run (tedloc_resnet_tiny) on the synthetic image set: 32x32 inputs, one epoch."""
    return cam_run_32


@pytest.fixture(scope="module")
def images(synthetic_small, run) -> torch.Tensor:
    """Four test images at the run's eval view."""
    from tedloc.data import load_dataset
    from tedloc.data.images import load_image

    split = load_dataset(synthetic_small)["test"]
    model = load_model(run, runtime=CPU)
    return torch.stack([model.preprocessing.eval_input(load_image(split.image_path(i))) for i in range(4)])


def _predicted(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network(x).argmax(dim=1)


@pytest.mark.parametrize("kind", sorted(GRADIENT_CAMS))
def test_maps_are_at_the_input_size_finite_and_in_unit_range(run, images, kind):
    network = load_model(run, runtime=CPU).model
    for classes in (None, torch.tensor([0, 1, 2, 3])):
        maps = gradient_cams(network, images, classes, kind)
        assert maps.shape == (4, INPUT, INPUT) and maps.dtype == torch.float32
        assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        assert maps.amax(dim=(1, 2)).gt(0).any()  # not all blank
    assert not network.training  # left in eval mode, as it was


def test_a_random_vit_gives_maps_on_its_patch_grid_at_the_input_size():
    from tedloc.models.classifier import build_classifier

    torch.manual_seed(0)
    vit = build_classifier("tedloc_vit_tiny", 4, input_size=INPUT).train()
    x = torch.randn(2, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(0))
    for kind in GRADIENT_CAMS:
        maps = gradient_cams(vit, x, torch.tensor([1, 2]), kind)
        assert maps.shape == (2, INPUT, INPUT) and torch.isfinite(maps).all()
        assert maps.min() >= 0 and maps.max() <= 1
    assert vit.training  # its mode is given back


@pytest.mark.parametrize("kind, cls", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                       ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM")])
def test_maps_equal_pytorch_grad_cam_called_directly(run, images, kind, cls):
    network = load_model(run, runtime=CPU).model
    classes = torch.tensor([3, 2, 1, 0])
    ours = gradient_cams(network, images, classes, kind)
    layer = default_target_layer(network)
    assert layer is network.get_submodule(network.feature_info[-1]["module"])
    with getattr(pytorch_grad_cam, cls)(model=network, target_layers=[layer]) as cam:
        reference = torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c))
                                                                      for c in classes]))
    assert torch.equal(ours, reference.float())
    # classes None: the predicted ones
    predicted = _predicted(network, images)
    assert torch.equal(gradient_cams(network, images, None, kind), gradient_cams(network, images, predicted, kind))


def test_smooth_gradcam_plus_plus_is_seeded_noise_averaged(run, images):
    network = load_model(run, runtime=CPU).model
    classes = torch.tensor([0, 1, 2, 3])
    first = gradient_cams(network, images, classes, "smoothgradcam++", seed=0)
    assert torch.equal(first, gradient_cams(network, images, classes, "smoothgradcam++", seed=0))
    assert not torch.equal(first, gradient_cams(network, images, classes, "smoothgradcam++", seed=1))
    assert not torch.equal(first, gradient_cams(network, images, classes, "gradcam++"))
    # the mean of Grad-CAM++ maps of the 4 noisy copies (sigma 0.3 of the input's range), drawn from the seed
    generator = torch.Generator().manual_seed(0)
    spread = 0.3 * (images.amax() - images.amin()).item()
    copies = [images + spread * torch.randn(images.shape, generator=generator) for _ in range(4)]
    expected = sum(gradient_cams(network, c, classes, "gradcam++") for c in copies) / 4
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-6)
    # no noise: the same as Grad-CAM++
    assert torch.equal(gradient_cams(network, images, classes, "smoothgradcam++", sigma=0.0, samples=1),
                       gradient_cams(network, images, classes, "gradcam++"))


def test_predict_maps_gives_every_kind_asked_and_the_predicted_class_ones(run, images):
    localizer = load_model(run, runtime=CPU)
    network = localizer.model
    assert localizer.map_kinds == ("cam", *GRADIENT_CAMS)
    predicted = _predicted(network, images)
    classes = (predicted + 1) % 4  # never the predicted class
    kinds = ("cam", "cam" + PRED_SUFFIX, "gradcam", "gradcam" + PRED_SUFFIX, "layercam", "xgradcam" + PRED_SUFFIX)
    scores, maps = localizer.predict_maps(images, kinds, classes)
    assert set(maps) == set(kinds)
    assert torch.allclose(scores, torch.softmax(network(images), dim=1).detach(), atol=1e-6)
    assert torch.equal(maps["gradcam"], gradient_cams(network, images, classes, "gradcam"))
    assert torch.equal(maps["gradcam@pred"], gradient_cams(network, images, predicted, "gradcam"))
    assert torch.equal(maps["layercam"], gradient_cams(network, images, classes, "layercam"))
    assert torch.equal(maps["xgradcam@pred"], gradient_cams(network, images, None, "xgradcam"))
    assert not torch.equal(maps["gradcam"], maps["gradcam@pred"])
    assert not torch.equal(maps["cam"], maps["cam@pred"])
    assert torch.equal(maps["cam@pred"], localizer.cams(images, None))
    assert torch.equal(maps["cam"], localizer.cams(images, classes))
    # without classes: the predicted ones for both
    _, by_default = localizer.predict_maps(images, ("gradcam", "gradcam@pred"))
    assert torch.equal(by_default["gradcam"], by_default["gradcam@pred"])
    assert torch.equal(by_default["gradcam"], maps["gradcam@pred"])


def test_load_model_with_a_map_kind_predicts_that_map(run, images):
    localizer = load_model(run, runtime=CPU, map_kind="layercam")
    assert localizer.map_kind == "layercam"
    scores, maps = localizer.predict(images)
    plain_scores, cams = load_model(run, runtime=CPU).predict(images)
    assert torch.allclose(scores, plain_scores, atol=1e-6)
    assert maps.shape == (4, INPUT, INPUT) and cams.shape[-1] < INPUT  # the CAM is at the feature resolution
    assert torch.equal(maps, gradient_cams(localizer.model, images, None, "layercam"))


def test_evaluate_cli_with_a_gradient_map(run, synthetic_small, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(synthetic_small), "--map", "gradcam++",
                 "--json", str(out), "--device", "cpu", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["map"] == "gradcam++"
    # the asked map first, then what an all-maps evaluation scores of a CAM run: the CAM (the other gradient maps
    # cost a backward pass each and are scored when asked by name)
    every = {"cam", "gradcam++"}
    assert set(metrics["maps"]) == (every | {k + PRED_SUFFIX for k in every}) - {"gradcam++"}
    assert printed.index("MaxBoxAcc") < printed.index("map 'cam'")  # gradcam++ first, the others after
    for kind in every:
        block = metrics if kind == "gradcam++" else metrics["maps"][kind]
        assert 0 <= block["MaxBoxAcc"] <= 100
    # the map reported first is the one `load_model(map_kind="gradcam++")` evaluates alone
    from tedloc.data import load_dataset
    from tedloc.eval.localizer_eval import evaluate_localizer

    alone = evaluate_localizer(load_model(run, runtime=CPU, map_kind="gradcam++"),
                               load_dataset(synthetic_small)["test"], batch_size=8)
    assert alone["MaxBoxAcc"] == metrics["MaxBoxAcc"]


def test_unknown_kind_is_one_line_listing_the_choices(run, images, synthetic_small, capsys):
    network = load_model(run, runtime=CPU).model
    with pytest.raises(TedlocError) as info:
        gradient_cams(network, images, None, "nosuchcam")
    message = str(info.value)
    assert "\n" not in message and "'nosuchcam'" in message
    assert all(kind in message for kind in GRADIENT_CAMS)
    with pytest.raises(TedlocError) as info:
        load_model(run, runtime=CPU, map_kind="nosuchcam")
    message = str(info.value)
    assert message.startswith(f"{run}: map 'nosuchcam' not offered; choose from cam, ") and "\n" not in message
    assert all(kind in message for kind in GRADIENT_CAMS)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(synthetic_small), "--map", "nosuchcam",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "map 'nosuchcam' not offered" in err[0], err
