"""Side-by-side with the reference CLIP-ES code (linyq2117/CLIP-ES), when a checkout is given.

Set ``TEDLOC_CLIPES_REF=/path/to/CLIP-ES`` to run. The reference is imported at test time only, never copied into
tedloc (``scripts/bench_clip_es.py::load_reference``; on a machine without CUDA its loop's device is set to the
CPU, the one line that names CUDA). Two checks:

* the golden fixtures of ``tests/test_clip_es_golden.py`` (which runs everywhere, without the reference) are
  what the reference's loop makes on this machine from their images and weight recipe;
* on OpenAI's ViT-B/16 architecture (random weights rounded to float16, as the reference keeps them), the
  softmax-Grad-CAM before CAA of tedloc's native view, read from the image file, equals the reference's
  GradCAM object on its own preprocessing, at an exact multiple of the patch and at a size it rounds up.
  (Random ViT-B/16 weights attend almost uniformly, so CAA there is nearly a masked mean of the CAM; the
  golden fixtures test CAA.)
"""
from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

REF = os.environ.get("TEDLOC_CLIPES_REF")
pytestmark = [pytest.mark.skipif(not REF, reason="set TEDLOC_CLIPES_REF to a CLIP-ES checkout"),
              pytest.mark.usefixtures("one_torch_thread")]
SCRIPTS = Path(__file__).parent.parent / "scripts"
FIXTURES = Path(__file__).parent / "fixtures" / "clip_es_golden"


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, str(SCRIPTS))
    from bench_clip_es import load_reference, unload_reference

    reference = load_reference(REF)
    yield reference
    unload_reference(reference)


def test_the_golden_fixtures_are_the_references_output(tmp_path):
    """The reference's loop, run again here on the committed images and the weight recipe, gives the committed
    maps (float16 at the image size: within one float16 step, 4.9e-4 below 1)."""
    sys.path.insert(0, str(SCRIPTS))
    from make_clip_es_golden import run_reference

    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    meta = run_reference(REF, tmp_path)
    with np.load(FIXTURES / "golden.npz") as committed, np.load(tmp_path / "golden.npz") as fresh:
        assert sorted(committed.files) == sorted(fresh.files)
        for key in committed.files:
            np.testing.assert_allclose(fresh[key].astype(np.float32), committed[key].astype(np.float32), atol=5e-4,
                                       err_msg=key)
    assert [item["name"] for item in meta["images"]] == ["scene0", "scene1", "scene2", "scene3"]


@pytest.fixture(scope="module")
def pair(ref):
    """The same random ViT-B/16 (QuickGELU, values rounded to fp16) as the reference's model, with its text
    features and GradCAM object, and as tedloc's tower."""
    import open_clip

    from tedloc.models.clip_vit import ClipSpec, ClipTower

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    state = {k: v.half().float() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    theirs = ref.clip.model.build_model(dict(state)).float().eval()
    gen = ref.gen
    names = list(ref.text.new_class_names)
    return types.SimpleNamespace(
        theirs=theirs, names=names,
        bg=gen.zeroshot_classifier(ref.text.BACKGROUND_CATEGORY, ["a clean origami {}."], theirs),
        fg=gen.zeroshot_classifier(names, ["a clean origami {}."], theirs),
        cam=gen.GradCAM(model=theirs, target_layers=[theirs.visual.transformer.resblocks[-1].ln_1],
                        reshape_transform=gen.reshape_transform),
        tower=ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec("ViT-B-16-quickgelu", "random")))


@pytest.mark.parametrize("size", [(208, 160), (150, 230)])
def test_grad_cam_of_the_native_view_equals_the_references(ref, pair, tmp_path, size):
    """The softmax-Grad-CAM alone, where no min-max over a nearly constant map magnifies float rounding: equal to
    1e-4, tedloc's image read and resized by its own preprocessing."""
    from bench_clip_es import write_voc_images
    from runtimes import CPU

    from tedloc.data.images import load_image
    from tedloc.pseudolabels.clip_es import ClipESConfig
    from tedloc.pseudolabels.clip_localizers import ClipESLocalizer

    write_voc_images(tmp_path / "voc", 1, size, "dog")
    path = tmp_path / "voc" / "JPEGImages" / "img0.jpg"
    w, h = size
    image = ref.gen.img_ms_and_flip(str(path), h, w)[0][None]
    label = pair.names.index("dog")
    features, _ = pair.theirs.encode_image(image, *image.shape[-2:])
    expected, _, _ = pair.cam(input_tensor=[features, torch.cat([pair.fg[[label]], pair.bg]), *image.shape[-2:]],
                              targets=[ref.gen.ClipOutputTarget(0)], target_size=None)

    tower = pair.tower
    localizer = ClipESLocalizer(tower, pair.names, tower.preprocessing(), runtime=CPU, config=ClipESConfig(
        background=tuple(ref.text.BACKGROUND_CATEGORY), drop_colliding_background=False, refine=False))
    pil = load_image(path)
    ours = tower.preprocessing().view_input(localizer.cache_transform().view(pil.size), pil)[None]
    torch.testing.assert_close(ours, image, atol=1e-6, rtol=0)  # the same pixels: resize, scaling, normalisation
    maps = localizer.cams(ours, torch.tensor([label]))
    np.testing.assert_allclose(maps[0].numpy(), expected[0], atol=1e-4)
