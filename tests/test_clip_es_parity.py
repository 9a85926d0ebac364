"""Side-by-side with the reference CLIP-ES code (linyq2117/CLIP-ES), when a checkout is given.

Set ``TEDLOC_CLIPES_REF=/path/to/CLIP-ES`` to run. The same random ViT-B/16 weights (OpenAI's
architecture, QuickGELU; values rounded to fp16, since the reference stores its weights in fp16)
go into both; the reference's own per-image loop (``generate_cams_voc12.perform``) writes its
refined map (``attn_highres``, float16) for one VOC-style image, and tedloc's batched CLIP-ES must
give the same map. The reference is imported at test time only, never copied into tedloc
(``scripts/bench_clip_es.py::load_reference``; on a machine without CUDA its loop's device is set
to the CPU, the one line that names CUDA).
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REF = os.environ.get("TEDLOC_CLIPES_REF")
pytestmark = pytest.mark.skipif(not REF, reason="set TEDLOC_CLIPES_REF to a CLIP-ES checkout")


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from bench_clip_es import load_reference, unload_reference

    reference = load_reference(REF)
    yield reference
    unload_reference(reference)


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


def _ours(ref, pair, refine: bool):
    from tedloc.pseudolabels.clip_es import ClipES, ClipESConfig

    return ClipES(pair.tower, pair.names, ClipESConfig(background=tuple(ref.text.BACKGROUND_CATEGORY),
                                                       drop_colliding_background=False, refine=refine))


def _image(ref, root, size, label):
    from bench_clip_es import write_voc_images

    write_voc_images(root / "voc", 1, size, label)
    w, h = size
    return ref.gen.img_ms_and_flip(str(root / "voc" / "JPEGImages" / "img0.jpg"), h, w)[0][None]


@pytest.mark.parametrize("size,tol", [((224, 224), 5e-3), ((208, 160), 5e-3)])
def test_refined_maps_equal_the_reference(ref, pair, tmp_path, size, tol):
    image = _image(ref, tmp_path, size, "cat")
    args = types.SimpleNamespace(img_root=str(tmp_path / "voc" / "JPEGImages"), cam_out_dir=str(tmp_path / "out"))
    os.makedirs(args.cam_out_dir)
    ref.gen.perform(0, [["img0.jpg"]], args, pair.theirs, pair.bg, pair.fg, pair.cam)
    expected = np.load(tmp_path / "out" / "img0.npy", allow_pickle=True).item()["attn_highres"][0].astype(np.float32)
    label = pair.names.index(ref.text.new_class_names[ref.text.class_names.index("cat")])
    _, maps = _ours(ref, pair, refine=True).maps(image, torch.tensor([label]))
    w, h = size
    got = cv2.resize(maps[0].numpy().astype(np.float32), (w, h))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=tol)
    assert np.abs(got - expected).mean() < tol / 4


@pytest.mark.parametrize("size", [(224, 224), (208, 160)])
def test_grad_cam_equals_the_references_before_caa(ref, pair, tmp_path, size):
    """The softmax-Grad-CAM alone (the reference's GradCAM object on its own model), where no min-max over a
    nearly constant map magnifies float rounding: equal to 1e-4."""
    image = _image(ref, tmp_path, size, "dog")
    label = pair.names.index("dog")
    w, h = size
    features, _ = pair.theirs.encode_image(image, h, w)
    expected, _, _ = pair.cam(input_tensor=[features, torch.cat([pair.fg[[label]], pair.bg]), h, w],
                              targets=[ref.gen.ClipOutputTarget(0)], target_size=None)
    _, maps = _ours(ref, pair, refine=False).maps(image, torch.tensor([label]))
    np.testing.assert_allclose(maps[0].numpy(), expected[0], atol=1e-4)
