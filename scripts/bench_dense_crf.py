"""Speed of the dense CRF loss (forward + backward), exact and with random Fourier features; and, with
``--lattice``, the value of the exact loss against DiPS's permutohedral lattice.

    python scripts/bench_dense_crf.py [--json out.json]
    python scripts/bench_dense_crf.py --lattice DIR --images 'TINY/val/images/val_*.JPEG' [--count 16] [--json out.json]

Timing cases: one 224x224 image (DiPS's size) exact and rff; 32 images of 64x64 exact; 32 images of 64x64 on a
32x32 grid (scale 0.5, the offline recipes); the median of 3 runs (1 for the 224x224 exact case).

``--lattice DIR``: ``DIR`` holds DiPS's ``bilateralfilter`` module (Tang et al.'s permutohedral lattice of
Krähenbühl and Koltun, ``aux/crf/crfwrapper/bilateralfilter`` of github.com/shakeebmurtaza/dips), built
there::

    pip install swig numpy setuptools
    swig -python -c++ bilateralfilter.i
    # its numpy.i predates Python 3: add "-DPyInt_Check=PyLong_Check", "-DPyString_Check=PyUnicode_Check"
    # to extra_compile_args in setup.py (and "from setuptools import setup, Extension")
    python setup.py build_ext --inplace

The images (the first ``--count`` of ``--images`` in natural order, resized bilinearly to 224x224, plus four
drawn shapes) each get three soft two-channel segmentations (uniform 0.5; a centred soft disc; one that
follows the image's luminance); for each the loss ``-sum_k S_k^T W S_k`` is computed with the exact filter and
the lattice (sigma_rgb 15, sigma_xy 100: DiPS's), and the ratio lattice / exact is printed with its mean and
range: the ``crf_gain`` that gives the exact loss the lattice's value (docs/DIPS.md).
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from tedloc.models.dense_crf_loss import bilateral_filter, dense_crf_loss

CASES = {  # name -> (batch, size, options, repeats)
    "224x224, 1 image, exact": (1, 224, {}, 1),
    "224x224, 1 image, rff 2048": (1, 224, {"method": "rff"}, 3),
    "64x64, 32 images, exact": (32, 64, {}, 3),
    "64x64, 32 images, scale 0.5 (32x32 grid), exact": (32, 64, {"scale": 0.5}, 3),
}
SIGMA_RGB, SIGMA_XY = 15.0, 100.0  # DiPS's


def timing() -> dict:
    """Seconds per call of every timing case."""
    generator = torch.Generator().manual_seed(0)
    results = {}
    for name, (batch, size, options, repeats) in CASES.items():
        logits = torch.randn(batch, 2, size, size, generator=generator, requires_grad=True)
        images = torch.rand(batch, 3, size, size, generator=generator) * 255
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            dense_crf_loss(logits.softmax(dim=1), images, **options).backward()
            times.append(time.perf_counter() - start)
        results[name] = round(statistics.median(times), 3)
        print(f"{name}: {results[name]} s", flush=True)
    return results


def shapes(size: int) -> dict[str, torch.Tensor]:
    """Four drawn RGB images ``(3, size, size)`` in [0, 255]: a disc, two halves, a noisy disc, stripes."""
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    disc = ((ys - size * 0.45) ** 2 + (xs - size * 0.55) ** 2) < (size * 0.25) ** 2
    colour = torch.tensor([200.0, 60.0, 40.0])[:, None, None]
    ground = torch.tensor([40.0, 120.0, 180.0])[:, None, None]
    noise = torch.randn(3, size, size, generator=generator) * 20
    return {"shape: disc": torch.where(disc, colour, ground),
            "shape: halves": torch.where(xs < size / 3, colour, ground),
            "shape: noisy disc": (torch.where(disc, colour, ground) + noise).clamp(0, 255),
            "shape: stripes": torch.where((xs // 16) % 2 == 0, colour, ground)}


def segmentations(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Soft two-channel segmentations ``(2, H, W)`` of an image: uniform, a centred disc, the luminance's."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    radius = ((ys - h / 2) ** 2 + (xs - w / 2) ** 2).sqrt() / (min(h, w) / 4)
    lum = image.mean(dim=0)
    fg = {"uniform": torch.full((h, w), 0.5), "disc": torch.sigmoid(4 * (1 - radius)),
          "luminance": torch.sigmoid((lum - lum.mean()) / lum.std().clamp_min(1.0))}
    return {name: torch.stack([1 - f, f]) for name, f in fg.items()}


def natural_order(path: str) -> list:
    """Sort key: numbers in the name by value (val_2 before val_10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def lattice_ratios(module_dir: str, pattern: str, count: int, size: int = 224) -> dict:
    """Per image and segmentation, the loss of DiPS's lattice over the exact loss; with their mean and range."""
    from PIL import Image

    sys.path.insert(0, module_dir)
    import bilateralfilter  # DiPS's extension, built in module_dir (see the module docstring)

    paths = sorted(glob.glob(pattern), key=natural_order)[:count]
    if not paths:
        raise SystemExit(f"no image matches {pattern}")
    images = {}
    for path in paths:
        rgb = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float()
        images[path] = F.interpolate(rgb[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    images.update(shapes(size))
    rows = []
    for name, image in images.items():
        segs = segmentations(image.clamp(0, 255))
        s = torch.stack(list(segs.values()))  # (n, 2, H, W)
        flat = s.reshape(-1, size, size)[None]  # every channel of every segmentation through one exact filter
        start = time.perf_counter()
        exact = bilateral_filter(image.clamp(0, 255)[None], flat, SIGMA_RGB, SIGMA_XY)[0].reshape_as(s)
        seconds = time.perf_counter() - start
        out = np.zeros(flat.numel(), dtype=np.float32)
        rgb = np.ascontiguousarray(image.clamp(0, 255).numpy().astype(np.float32).ravel())
        bilateralfilter.bilateralfilter_batch(rgb, np.ascontiguousarray(flat.numpy().astype(np.float32).ravel()),
                                              out, 1, flat.shape[1], size, size, SIGMA_RGB, SIGMA_XY)
        lattice = torch.from_numpy(out).reshape_as(s)
        for i, seg_name in enumerate(segs):
            ratio = float((s[i] * lattice[i]).sum() / (s[i] * exact[i]).sum())
            rows.append({"image": name, "segmentation": seg_name, "lattice_over_exact": round(ratio, 4)})
        print(f"{name}: " + ", ".join(f"{r['segmentation']} {r['lattice_over_exact']}" for r in rows[-len(segs):])
              + f" (exact {seconds:.0f} s)", flush=True)
    ratios = [r["lattice_over_exact"] for r in rows]
    real = [r["lattice_over_exact"] for r in rows if not r["image"].startswith("shape:")]
    summary = {"images": len(paths), "shapes": 4, "size": size, "sigma_rgb": SIGMA_RGB, "sigma_xy": SIGMA_XY,
               "mean": round(statistics.mean(ratios), 4), "min": min(ratios), "max": max(ratios),
               "mean_real": round(statistics.mean(real), 4), "min_real": min(real), "max_real": max(real)}
    print(f"lattice / exact over {len(rows)} cases: mean {summary['mean']}, range {summary['min']}-{summary['max']}"
          f"; real images only: mean {summary['mean_real']}, range {summary['min_real']}-{summary['max_real']}")
    return {"summary": summary, "rows": rows}


def main() -> None:
    """Time every case (or compare with the lattice) and print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--lattice", metavar="DIR", help="folder of DiPS's built bilateralfilter module")
    parser.add_argument("--images", help="glob of the real images (with --lattice)")
    parser.add_argument("--count", type=int, default=16, help="real images (the first ones in natural order)")
    args = parser.parse_args()
    if args.lattice:
        if not args.images:
            parser.error("--lattice needs --images")
        results = lattice_ratios(args.lattice, args.images, args.count)
    else:
        results = timing()
    results["torch"] = torch.__version__
    results["threads"] = torch.get_num_threads()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
