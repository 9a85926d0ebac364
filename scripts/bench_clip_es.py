"""CLIP-ES speed: maps per second of tedloc's batched CLIP-ES, and of the reference's own loop when a checkout
of linyq2117/CLIP-ES is given.

    python scripts/bench_clip_es.py --json bench_clip_es.json                      # tiny + ViT-B/16, CPU
    TEDLOC_CLIPES_REF=/path/to/CLIP-ES python scripts/bench_clip_es.py             # + the reference's loop
    python scripts/bench_clip_es.py --device cuda --images 256 --batch-sizes 1 32 128
    python scripts/bench_clip_es.py --models ViT-B-16-quickgelu --native-sizes 512x384    # + a native VOC-size view

Random weights (speed, not accuracy): ``tiny`` (open_clip config of 8-pixel patches, 3 blocks of
width 32) on 64x64 images (an 8x8 grid) and OpenAI's ViT-B/16 architecture (``ViT-B-16-quickgelu``)
on 224x224 images (a 14x14 grid), one class each, 20 classes and CLIP-ES's 25 background prompts; the full CLIP-ES map
(Grad-CAM + CAA) is timed, text embeddings excluded (computed once; their speed is measured
apart: 400 class prompts through open_clip's ``encode_text`` and through tedloc's ``encode_tokens``). tedloc runs at each
``--batch-sizes``; the reference runs its ``generate_cams_voc12.perform`` loop (one image, one
class at a time, reading a JPEG and writing its ``.npy`` per image, as it does) on the same weights.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import torch

TINY_CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 3,
                                               "head_width": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
_REF_MODULES = ("pytorch_grad_cam", "clip", "utils", "clip_text", "generate_cams_voc12")
IMAGE_SIZE = {"tiny": 64}  # other models: 224


def load_reference(path: str | os.PathLike) -> types.SimpleNamespace:
    """The reference's ``clip``, ``clip_text`` and ``generate_cams_voc12`` modules from a checkout, with its own
    vendored ``pytorch_grad_cam`` (an installed grad-cam package is set aside; :func:`unload_reference` puts it
    back). Shims for what recent environments lack: ``pkg_resources.packaging``, ``lxml.etree`` (the standard
    library's ElementTree parses the same VOC XML); on a machine without CUDA the loop's device line is set to
    the CPU."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in _REF_MODULES}
    for k in saved:
        del sys.modules[k]
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    try:
        import lxml  # noqa: F401
    except ImportError:
        sys.modules["lxml"] = types.SimpleNamespace(etree=ElementTree)
    sys.path.insert(0, str(path))
    import clip
    import clip_text
    import generate_cams_voc12 as gen

    gen.device = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        source = inspect.getsource(gen.perform)
        line = 'device_id = "cuda:{}".format(process_id % n_gpus)'
        if line not in source:
            raise RuntimeError("the reference's loop changed: its device line is not found")
        exec(source.replace(line, 'device_id = "cpu"'), gen.__dict__)
    return types.SimpleNamespace(clip=clip, text=clip_text, gen=gen, saved=saved, path=str(path))


def unload_reference(ref: types.SimpleNamespace) -> None:
    """Undo :func:`load_reference`: its modules out, the set-aside ones back."""
    if ref.path in sys.path:
        sys.path.remove(ref.path)
    for k in [k for k in sys.modules if k.split(".")[0] in _REF_MODULES]:
        del sys.modules[k]
    sys.modules.update(ref.saved)


def write_voc_images(root: Path, n: int, size: tuple[int, int], label: str, seed: int = 3) -> list[str]:
    """``n`` VOC-style images (``JPEGImages/*.jpg`` + ``Annotations/*.xml`` with one object ``label``)."""
    from PIL import Image

    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    names = []
    for i in range(n):
        img = (rng.random((h, w, 3)) * 60 + 80).astype(np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y: y + h // 2, x: x + w // 2] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(root / "JPEGImages" / f"img{i}.jpg", quality=95)
        (root / "Annotations" / f"img{i}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f"<object><name>{label}</name></object></annotation>")
        names.append(f"img{i}.jpg")
    return names


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(name: str):
    import open_clip

    if name == "tiny":
        path = Path(tempfile.mkdtemp()) / "bench-tiny-clip.json"
        path.write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(path)
        name = "bench-tiny-clip"
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None)
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})  # as the reference keeps them
    return name, model


def bench_ours(model_name: str, model, images: torch.Tensor, batch_sizes: list[int], device: torch.device,
               repeats: int) -> dict:
    """tedloc's CLIP-ES maps per second at each batch size."""
    import open_clip

    from tedloc.pseudolabels.clip_es import ClipES
    from tedloc.models.clip_vit import ClipSpec, ClipTower

    tower = ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec(model_name, "random")).to(device)
    es = ClipES(tower, [f"object {i}" for i in range(20)]).to(device)
    classes = torch.arange(len(images)) % 20
    out = {}
    for b in batch_sizes:
        es.maps(images[:b].to(device), classes[:b])  # warm-up
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for i in range(0, len(images), b):
                es.maps(images[i:i + b].to(device), classes[i:i + b])
            _sync(device)
            times.append(time.perf_counter() - start)
        out[f"batch {b}"] = round(len(images) / statistics.median(times), 2)
    return out


def bench_text(model_name: str, model, device: torch.device, prompts: int = 400) -> dict:
    """Class prompts per second through the text tower: open_clip's ``encode_text`` (the full 77-token
    context) and tedloc's ``ClipTower.encode_tokens`` (up to the last end token), outputs compared."""
    import open_clip

    from tedloc.models.clip_vit import ClipSpec, ClipTower

    tower = ClipTower(model, open_clip.get_tokenizer("ViT-B-16"), ClipSpec(model_name, "random")).to(device)
    tokens = tower.tokenizer([f"a bad photo of a object number {i}." for i in range(prompts)]).to(device)
    out = {}
    with torch.no_grad():
        for name, encode in (("open_clip encode_text", tower.model.encode_text), ("tedloc", tower.encode_tokens)):
            encode(tokens[:8])
            _sync(device)
            start = time.perf_counter()
            result = torch.cat([encode(tokens[i:i + 100]) for i in range(0, prompts, 100)])
            _sync(device)
            out[name] = round(prompts / (time.perf_counter() - start), 1)
            out.setdefault("outputs", []).append(result)
    first, second = out.pop("outputs")
    out["max abs difference"] = float((first - second).abs().max())
    return out


def bench_reference(ref, model, n: int, device: torch.device, repeats: int) -> float:
    """The reference loop's maps per second on ``n`` 224x224 VOC-style images."""
    gen = ref.gen
    theirs = ref.clip.model.build_model({k: v.clone() for k, v in model.state_dict().items()})
    theirs = theirs.float().eval() if device.type == "cpu" else theirs.to(device).eval()
    bg = gen.zeroshot_classifier(ref.text.BACKGROUND_CATEGORY, ["a clean origami {}."], theirs)
    fg = gen.zeroshot_classifier(ref.text.new_class_names, ["a clean origami {}."], theirs)
    cam = gen.GradCAM(model=theirs, target_layers=[theirs.visual.transformer.resblocks[-1].ln_1],
                      reshape_transform=gen.reshape_transform)
    with tempfile.TemporaryDirectory() as tmp:
        names = write_voc_images(Path(tmp) / "voc", n, (224, 224), "cat")
        args = types.SimpleNamespace(img_root=str(Path(tmp) / "voc" / "JPEGImages"), cam_out_dir=str(Path(tmp) / "out"))
        os.makedirs(args.cam_out_dir)
        gen.perform(0, [names[:1]], args, theirs, bg, fg, cam)  # warm-up
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            gen.perform(0, [names], args, theirs, bg, fg, cam)
            _sync(device)
            times.append(time.perf_counter() - start)
    return round(n / statistics.median(times), 2)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and write with ``--json``) maps per second."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["tiny", "ViT-B-16-quickgelu"])
    parser.add_argument("--images", type=int, default=32, help="images per timed pass (default 32)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--native-sizes", nargs="*", default=[], metavar="WxH",
                        help="also time tedloc at these image sizes (not the tiny model), e.g. 512x384: a VOC or CUB "
                             "image of 500x375 in CLIP-ES's native view")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    ref_path = os.environ.get("TEDLOC_CLIPES_REF")
    ref = load_reference(ref_path) if ref_path else None
    results = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "images": args.images, "models": {}}
    try:
        for name in args.models:
            model_name, model = _model(name)
            size = IMAGE_SIZE.get(name, 224)
            images = torch.from_numpy(np.random.default_rng(0).normal(size=(args.images, 3, size, size))
                                      .astype(np.float32))
            row = {"tedloc": bench_ours(model_name, model, images, args.batch_sizes, device, args.repeats)}
            for wxh in args.native_sizes if name != "tiny" else []:
                w, h = (int(v) for v in wxh.lower().split("x"))
                native = torch.from_numpy(np.random.default_rng(0).normal(size=(args.images, 3, h, w)).astype(np.float32))
                row[f"tedloc {w}x{h}"] = bench_ours(model_name, model, native, args.batch_sizes, device, args.repeats)
            row["text prompts/s"] = bench_text(model_name, model, device)
            if ref is not None and name != "tiny":  # the reference derives heads as width // 64: no tiny model
                row["reference"] = bench_reference(ref, model, args.images, device, args.repeats)
            results["models"][name] = row
            print(name, json.dumps(row), flush=True)
    finally:
        if ref is not None:
            unload_reference(ref)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
