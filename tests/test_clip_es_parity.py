"""Side-by-side with the reference CLIP-ES code (linyq2117/CLIP-ES), when a checkout is given.

Set ``TEDLOC_CLIPES_REF=/path/to/CLIP-ES`` to run. The same random ViT-B/16 weights (OpenAI's
architecture, QuickGELU; values rounded to fp16, since the reference stores its weights in fp16)
go into both; the reference's own per-image loop (``generate_cams_voc12.perform``) writes its
refined map (``attn_highres``, float16) for one VOC-style image, and tedloc's batched CLIP-ES must
give the same map. The reference is imported at test time only, never copied into tedloc. On a
machine without CUDA its loop's device is set to the CPU (the one line that names CUDA).
"""
from __future__ import annotations

import inspect
import os
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

REF = os.environ.get("TEDLOC_CLIPES_REF")
pytestmark = pytest.mark.skipif(not REF, reason="set TEDLOC_CLIPES_REF to a CLIP-ES checkout")


@pytest.fixture(scope="module")
def ref():
    """The reference modules, with its own ``clip`` and vendored ``pytorch_grad_cam`` (the installed grad-cam
    package is put back afterwards)."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("pytorch_grad_cam", "clip", "utils")}
    for k in saved:
        del sys.modules[k]
    if "lxml" not in sys.modules:  # the reference parses VOC XML with lxml; the standard library does the same here
        try:
            import lxml  # noqa: F401
        except ImportError:
            sys.modules["lxml"] = types.SimpleNamespace(etree=ElementTree)
    try:  # the reference's clip package takes `packaging` from pkg_resources, gone from recent setuptools
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    sys.path.insert(0, REF)
    try:
        import clip
        import clip_text
        import generate_cams_voc12 as gen
        gen.device = "cpu"
        if not torch.cuda.is_available():
            source = inspect.getsource(gen.perform)
            line = 'device_id = "cuda:{}".format(process_id % n_gpus)'
            assert line in source, "the reference's loop changed; update this test"
            exec(source.replace(line, 'device_id = "cpu"'), gen.__dict__)
        yield types.SimpleNamespace(clip=clip, text=clip_text, gen=gen)
    finally:
        sys.path.remove(REF)
        for k in [k for k in sys.modules if k.split(".")[0] in ("pytorch_grad_cam", "clip", "utils")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def weights():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    state = {k: v.half().float() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model, state


def _voc_image(root: Path, name: str, size: tuple[int, int], label: str) -> None:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    w, h = size
    img = (rng.random((h, w, 3)) * 60 + 80).astype(np.uint8)
    img[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = [200, 40, 40]
    Image.fromarray(img).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
    (root / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<object><name>{label}</name></object></annotation>")


@pytest.mark.parametrize("size,tol", [((224, 224), 2e-3), ((208, 160), 2e-2)])
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
    _voc_image(tmp_path / "voc", "img", size, "cat")
    args = types.SimpleNamespace(img_root=str(tmp_path / "voc" / "JPEGImages"), cam_out_dir=str(tmp_path / "out"))
    os.makedirs(args.cam_out_dir)
    gen.perform(0, [["img.jpg"]], args, theirs, bg, fg, cam)
    expected = np.load(tmp_path / "out" / "img.npy", allow_pickle=True).item()["attn_highres"][0].astype(np.float32)

    tower = ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec("ViT-B-16-quickgelu", "random"))
    ours = ClipES(tower, names, ClipESConfig(background=tuple(ref.text.BACKGROUND_CATEGORY),
                                             drop_colliding_background=False))
    w, h = size
    image = gen.img_ms_and_flip(str(tmp_path / "voc" / "JPEGImages" / "img.jpg"), h, w)[0][None]
    label = names.index(ref.text.new_class_names[ref.text.class_names.index("cat")])
    _, maps = ours.maps(image, torch.tensor([label]))
    got = cv2.resize(maps[0].numpy().astype(np.float32), (w, h))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=tol)
    assert np.abs(got - expected).mean() < tol / 4
