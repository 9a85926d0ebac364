"""Golden CLIP-ES maps of the reference code (linyq2117/CLIP-ES) for tests/test_clip_es_golden.py.

    python scripts/make_clip_es_golden.py --reference /path/to/CLIP-ES          # rewrites tests/fixtures/clip_es_golden

The weights are no checkpoint but a recipe (:func:`golden_state_dict`): a small CLIP of OpenAI's layout (ViT image
tower of 16-pixel patches, 4 blocks of width 128, 2 heads; a 1-block text tower of width 64; QuickGELU), every
tensor drawn from NumPy's PCG64 stream keyed by the tensor's name (uniform, so the same bits on any machine and
NumPy version), rounded to float16 as the reference keeps its weights. Each attention's key projection is its
query projection plus a little noise, scaled up (``SHARPNESS``): a patch attends to the patches that look like
it, peakily, so CAA moves the map (random init gives a nearly uniform attention, under which CAA is a masked
mean of the CAM).

The images (``images/*.png``, written once by :func:`make_images`, then read from disk) are small synthetic
scenes of different sizes; two of them share their native size (``160x240``) and run in one batch in tedloc.
The reference's own loop (``generate_cams_voc12.perform``, one image and one class at a time) runs on them on
the CPU; its output (``attn_highres``: the refined map at the image size, float16) is stored with its Grad-CAM
(the grid map before CAA) and the refined grid before its min-max, which the loop computes on the way
(recorded by wrapping, not changing, its ``scale_cam_image`` and ``cam`` calls).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import types
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "clip_es_golden"
SEED = 7
SHARPNESS = 1.5  # the query/key projections' scale over 1/sqrt(width)
VISION = {"image_size": 224, "patch_size": 16, "width": 128, "layers": 4, "head_width": 64}
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}
EMBED_DIM = 64
# name, (width, height), VOC class (the reference's label names), seed of the scene
IMAGES = (("scene0", (208, 160), "cat", 1), ("scene1", (150, 230), "dog", 2), ("scene2", (145, 227), "bird", 3),
          ("scene3", (100, 131), "car", 4))


def golden_model():
    """The open_clip CLIP of the recipe, with :func:`golden_state_dict`'s weights (float32, eval mode)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    model = CLIP(EMBED_DIM, CLIPVisionCfg(**VISION), CLIPTextCfg(**TEXT), quick_gelu=True)
    model.load_state_dict(golden_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}))
    return model.eval()


def _uniform(name: str, shape: tuple[int, ...], std: float, seed: int = SEED) -> np.ndarray:
    """Centred uniform values of standard deviation ``std`` from PCG64 keyed by ``(seed, crc32(name))``."""
    u = np.random.default_rng([seed, zlib.crc32(name.encode())]).random(int(np.prod(shape, dtype=np.int64)))
    return ((u * 2 - 1) * np.sqrt(3) * std).reshape(shape)


def golden_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, torch.Tensor]:
    """The recipe's tensors for the names and shapes of an OpenAI-layout CLIP state dict (float32 values that
    are exact float16 numbers)."""
    out = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if name == "logit_scale":
            value = np.full(shape, np.log(100.0))
        elif ".ln_" in name or name.startswith("ln_"):
            value = 1 + _uniform(name, shape, 0.1, seed) if leaf == "weight" else _uniform(name, shape, 0.05, seed)
        elif leaf == "in_proj_weight" and name.startswith("visual."):  # q, k, v stacked: k = q + noise, sharpened
            width = shape[1]
            q = _uniform(name + ".q", (width, width), SHARPNESS / np.sqrt(width), seed)
            k = q + _uniform(name + ".k", (width, width), 0.5 / np.sqrt(width), seed)
            v = _uniform(name + ".v", (width, width), 1 / np.sqrt(width), seed)
            value = np.concatenate([q, k, v])
        elif leaf in ("bias", "in_proj_bias"):
            value = _uniform(name, shape, 0.02, seed)
        elif name.endswith("positional_embedding"):
            value = _uniform(name, shape, 0.5 if name.startswith("visual.") else 0.01, seed)
        elif name in ("token_embedding.weight", "visual.class_embedding"):  # prompts far apart: no flat softmax
            value = _uniform(name, shape, 1.0, seed)
        else:  # linear maps, the patch convolution and the projections: 1 / sqrt(fan in)
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 and name != "visual.proj" and name != "text_projection" \
                else shape[0]
            value = _uniform(name, shape, 1 / np.sqrt(fan_in), seed)
        out[name] = torch.from_numpy(np.asarray(value, dtype=np.float32)).half().float()
    return out


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and float16 values, in name order (the recipe's weights, recognised)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().half().contiguous().numpy().tobytes())
    return digest.hexdigest()


def make_images(folder: Path) -> None:
    """The synthetic scenes of :data:`IMAGES` as PNG files: a shaded, noisy background with a textured ellipse
    and a flat rectangle."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h), _label, seed in IMAGES:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(60, 160, 3)
        img = base + 60 * (xx[..., None] * rng.uniform(-1, 1, 3) + yy[..., None] * rng.uniform(-1, 1, 3))
        img = img + rng.normal(0, 1.5, (h, w, 3))
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ay, ax = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
        inside = ((np.mgrid[0:h, 0:w][0] - cy) / ay) ** 2 + ((np.mgrid[0:h, 0:w][1] - cx) / ax) ** 2 < 1
        stripes = 40 * np.sin(np.mgrid[0:h, 0:w][1] / 3.0 + np.mgrid[0:h, 0:w][0] / 5.0)[..., None]
        img[inside] = (rng.uniform(0, 255, 3) + stripes + rng.normal(0, 1.5, (h, w, 3)))[inside]
        y0, x0 = rng.integers(0, h // 4), rng.integers(0, w // 4)
        img[y0:y0 + h // 5, x0:x0 + w // 5] = rng.uniform(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{name}.png")


def _reference_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_reference(ref_path: str | os.PathLike, out: Path = FIXTURES) -> dict:
    """Run the reference's loop on the images of ``out/images`` and write ``out/golden.npz`` and ``out/meta.json``."""
    import cv2
    import PIL
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_clip_es import load_reference, unload_reference

    ref = load_reference(ref_path)
    try:
        gen = ref.gen
        state = {k: v.clone() for k, v in golden_model().state_dict().items()}
        digest = weights_digest(state)
        theirs = ref.clip.model.build_model(state).float().eval()
        bg = gen.zeroshot_classifier(ref.text.BACKGROUND_CATEGORY, ["a clean origami {}."], theirs)
        fg = gen.zeroshot_classifier(ref.text.new_class_names, ["a clean origami {}."], theirs)
        cam = gen.GradCAM(model=theirs, target_layers=[theirs.visual.transformer.resblocks[-1].ln_1],
                          reshape_transform=gen.reshape_transform)
        recorded: dict[str, list] = {"cam": [], "refined": []}

        def recording_cam(**kwargs):
            result = cam(**kwargs)
            recorded["cam"].append(np.array(result[0][0], dtype=np.float32))
            return result

        original_scale = gen.scale_cam_image

        def recording_scale(cams, target_size=None):
            recorded["refined"].append(np.array(cams[0], dtype=np.float32))
            return original_scale(cams, target_size)

        arrays, items = {}, []
        with tempfile.TemporaryDirectory() as tmp:
            voc = Path(tmp) / "voc"
            (voc / "JPEGImages").mkdir(parents=True)
            (voc / "Annotations").mkdir()
            args = types.SimpleNamespace(img_root=str(voc / "JPEGImages"), cam_out_dir=str(Path(tmp) / "out"))
            os.makedirs(args.cam_out_dir)
            gen.scale_cam_image = recording_scale
            try:
                for name, (w, h), label, _seed in IMAGES:
                    png = out / "images" / f"{name}.png"
                    assert Image.open(png).size == (w, h)
                    # the loop names its files *.jpg (Pillow reads the PNG bytes whatever the name)
                    (voc / "JPEGImages" / f"{name}.jpg").write_bytes(png.read_bytes())
                    (voc / "Annotations" / f"{name}.xml").write_text(
                        f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
                        f"<object><name>{label}</name></object></annotation>")
                    for values in recorded.values():
                        values.clear()
                    gen.perform(0, [[f"{name}.jpg"]], args, theirs, bg, fg, recording_cam)
                    saved = np.load(Path(args.cam_out_dir) / f"{name}.npy", allow_pickle=True).item()
                    arrays[f"{name}/refined"] = saved["attn_highres"][0]  # float16, as the loop writes it
                    arrays[f"{name}/cam_grid"] = recorded["cam"][0]
                    arrays[f"{name}/refined_grid_raw"] = recorded["refined"][0]
                    items.append({"name": name, "size": [w, h], "label": label,
                                  "class": ref.text.new_class_names[ref.text.class_names.index(label)],
                                  "grid": list(recorded["cam"][0].shape)})
            finally:
                gen.scale_cam_image = original_scale
        meta = {"reference": "https://github.com/linyq2117/CLIP-ES", "reference_commit": _reference_commit(Path(ref_path)),
                "made_by": "scripts/make_clip_es_golden.py", "torch": torch.__version__, "numpy": np.__version__,
                "pillow": PIL.__version__, "opencv": cv2.__version__, "device": "cpu",
                "recipe": {"seed": SEED, "sharpness": SHARPNESS, "vision": VISION, "text": TEXT,
                           "embed_dim": EMBED_DIM, "quick_gelu": True, "dtype": "float16 values, run in float32",
                           "weights_sha256": digest},
                "class_names": list(ref.text.new_class_names), "background": list(ref.text.BACKGROUND_CATEGORY),
                "template": "a clean origami {}.", "images": items}
    finally:
        unload_reference(ref)
    np.savez_compressed(out / "golden.npz", **arrays)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    """Write the images (unless present or ``--keep-images``) and the reference's golden maps."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("TEDLOC_CLIPES_REF"),
                        help="a checkout of linyq2117/CLIP-ES (default $TEDLOC_CLIPES_REF)")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--new-images", action="store_true", help="draw the images again (else kept if present)")
    args = parser.parse_args(argv)
    if not args.reference:
        parser.error("give --reference (or set TEDLOC_CLIPES_REF)")
    torch.set_num_threads(1)
    if args.new_images or not (args.out / "images").is_dir():
        make_images(args.out / "images")
    meta = run_reference(args.reference, args.out)
    for item in meta["images"]:
        print(item["name"], item["size"], "grid", item["grid"], item["class"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
