"""Speed of the dense CRF loss (forward + backward), exact and with random Fourier features.

    python scripts/bench_dense_crf.py [--json out.json]

Cases: one 224x224 image (DiPS's size) exact and rff; 32 images of 64x64 exact; 32 images of 64x64 on a 32x32
grid (scale 0.5, the offline recipes); the median of 3 runs (1 for the 224x224 exact case).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tedloc.models.dense_crf_loss import dense_crf_loss

CASES = {  # name -> (batch, size, options, repeats)
    "224x224, 1 image, exact": (1, 224, {}, 1),
    "224x224, 1 image, rff 2048": (1, 224, {"method": "rff"}, 3),
    "64x64, 32 images, exact": (32, 64, {}, 3),
    "64x64, 32 images, scale 0.5 (32x32 grid), exact": (32, 64, {"scale": 0.5}, 3),
}


def main() -> None:
    """Time every case and print (and optionally write) seconds per call."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
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
    results["torch"] = torch.__version__
    results["threads"] = torch.get_num_threads()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
