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
def weights():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    state = {k: v.half().float() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model, state


@pytest.mark.parametrize("size,tol", [((224, 224), 5e-3), ((208, 160), 5e-3)])
def test_refined_maps_equal_the_reference(ref, weights, tmp_path, size, tol):
    import open_clip

    from tedloc.cams.clip_es import ClipES, ClipESConfig
    from tedloc.models.clip_vit import ClipSpec, ClipTower

    model, state = weights
    theirs = ref.clip.model.build_model(dict(state)).float().eval()
    gen = ref.gen
    names = list(ref.text.new_class_names)
    bg = gen.zeroshot_classifier(ref.text.BACKGROUND_CATEGORY, ["a clean origami {}."], theirs)
    fg = gen.zeroshot_classifier(names, ["a clean origami {}."], theirs)
    cam = gen.GradCAM(model=theirs, target_layers=[theirs.visual.transformer.resblocks[-1].ln_1],
                      reshape_transform=gen.reshape_transform)
    from bench_clip_es import write_voc_images

    write_voc_images(tmp_path / "voc", 1, size, "cat")
    args = types.SimpleNamespace(img_root=str(tmp_path / "voc" / "JPEGImages"), cam_out_dir=str(tmp_path / "out"))
    os.makedirs(args.cam_out_dir)
    gen.perform(0, [["img0.jpg"]], args, theirs, bg, fg, cam)
    expected = np.load(tmp_path / "out" / "img0.npy", allow_pickle=True).item()["attn_highres"][0].astype(np.float32)

    tower = ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec("ViT-B-16-quickgelu", "random"))
    ours = ClipES(tower, names, ClipESConfig(background=tuple(ref.text.BACKGROUND_CATEGORY),
                                             drop_colliding_background=False))
    w, h = size
    image = gen.img_ms_and_flip(str(tmp_path / "voc" / "JPEGImages" / "img0.jpg"), h, w)[0][None]
    label = names.index(ref.text.new_class_names[ref.text.class_names.index("cat")])
    _, maps = ours.maps(image, torch.tensor([label]))
    got = cv2.resize(maps[0].numpy().astype(np.float32), (w, h))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=tol)
    assert np.abs(got - expected).mean() < tol / 4


@pytest.mark.parametrize("size", [(224, 224), (208, 160)])
def test_grad_cam_equals_the_references_before_caa(ref, weights, tmp_path, size):
    """The softmax-Grad-CAM alone (the reference's GradCAM object on its own model), where no min-max over a
    nearly constant map magnifies float rounding: equal to 1e-4."""
    import open_clip

    from bench_clip_es import write_voc_images

    from tedloc.cams.clip_es import ClipES, ClipESConfig
    from tedloc.models.clip_vit import ClipSpec, ClipTower

    model, state = weights
    theirs = ref.clip.model.build_model(dict(state)).float().eval()
    gen = ref.gen
    names = list(ref.text.new_class_names)
    bg = gen.zeroshot_classifier(ref.text.BACKGROUND_CATEGORY, ["a clean origami {}."], theirs)
    fg = gen.zeroshot_classifier(names, ["a clean origami {}."], theirs)
    cam = gen.GradCAM(model=theirs, target_layers=[theirs.visual.transformer.resblocks[-1].ln_1],
                      reshape_transform=gen.reshape_transform)
    w, h = size
    write_voc_images(tmp_path / "voc", 1, size, "dog")
    image = gen.img_ms_and_flip(str(tmp_path / "voc" / "JPEGImages" / "img0.jpg"), h, w)[0][None]
    label = names.index("dog")
    features, _ = theirs.encode_image(image, h, w)
    expected, _, _ = cam(input_tensor=[features, torch.cat([fg[[label]], bg]), h, w],
                         targets=[gen.ClipOutputTarget(0)], target_size=None)
    tower = ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec("ViT-B-16-quickgelu", "random"))
    ours = ClipES(tower, names, ClipESConfig(background=tuple(ref.text.BACKGROUND_CATEGORY),
                                             drop_colliding_background=False, refine=False))
    _, maps = ours.maps(image, torch.tensor([label]))
    np.testing.assert_allclose(maps[0].numpy(), expected[0], atol=1e-4)
