"""Peak memory of ``tedloc predict`` on large images: a 24-megapixel JPEG photo and a 20000 x 20000 PNG.

    python scripts/bench_predict_memory.py [--run RUN] [--work DIR] [--limit-gb 6]

Makes the two images (and a 48 x 48 one, the baseline: what the process costs with a tiny image)
in a temporary folder, trains the smallest run (the CAM baseline of a tiny CNN, input 48, one
epoch on a small synthetic set) unless ``--run`` is given, runs ``tedloc predict --out`` on each
image in a fresh process limited to ``--limit-gb`` of address space, and reports its peak RSS
(``ru_maxrss``), the difference to the baseline, the wall time and what was written.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

_MEASURE = ("import resource, sys\nfrom tedloc.cli import main\nrc = main(sys.argv[1:])\n"
            "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I4s", len(data), kind) + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def uniform_png(path: Path, width: int, height: int, rgb=(90, 120, 200)) -> Path:
    """A ``width`` x ``height`` RGB PNG of one colour, written row by row (never whole in memory)."""
    compress = zlib.compressobj(9)
    row = b"\0" + bytes(rgb) * width
    data = [compress.compress(row) for _ in range(height)] + [compress.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(data))
                     + _chunk(b"IEND", b""))
    return path


def photo_jpeg(path: Path, width: int = 6000, height: int = 4000, seed: int = 0) -> Path:
    """A smooth random picture (bicubic enlargement of 60 x 40 noise), JPEG quality 90."""
    noise = np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((width, height), Image.BICUBIC).save(path, quality=90)
    return path


def tiny_run(work: Path) -> Path:
    """The CAM baseline of a tiny CNN (input 48, one epoch) on a small synthetic set."""
    data, run = work / "data", work / "run"
    _tedloc("data", "synthetic", "--out", str(data), "--classes", "4", "--train", "24", "--val", "8", "--test", "8",
            "--size", "48")
    _tedloc("pretrain", "--data", str(data), "--out", str(run), "--arch", "tedloc_resnet_tiny", "--input-size", "48",
            "--epochs", "1", "--batch-size", "8", "--workers", "0")
    return run


def _tedloc(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tedloc", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"tedloc {' '.join(args)} failed:\n{proc.stderr}")


def measure(run: Path, image: Path, out: Path, limit_gb: float) -> dict:
    """Peak RSS (MiB), exit status, wall time and outputs of ``tedloc predict --run RUN IMAGE --out OUT``."""
    def limit() -> None:
        import resource
        size = int(limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    start = time.perf_counter()
    command = [sys.executable, "-c", _MEASURE, "predict", "--run", str(run), str(image), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit)
    seconds = time.perf_counter() - start
    last = (proc.stdout.strip().splitlines() or [""])[-1].split()
    result = {"image": image.name, "file_mb": image.stat().st_size / 1e6, "wall_s": seconds,
              "peak_mib": int(last[1]) / 1024 if last[:1] == ["maxrss"] else None, "exit": proc.returncode}
    if result["peak_mib"] is None:
        result["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
    record = out / f"{image.stem}.json"
    if record.exists():
        meta = json.loads(record.read_text())
        result["map_shape"] = list(np.load(out / meta["map"], mmap_mode="r").shape)
        result["written_mb"] = sum(f.stat().st_size for f in out.glob(f"{image.stem}.*")) / 1e6
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained run (default: train the tiny one)")
    parser.add_argument("--work", help="folder for the images and outputs (default: a temporary one)")
    parser.add_argument("--limit-gb", type=float, default=6.0, help="address-space limit of each measured process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = Path(args.run) if args.run else tiny_run(work)
        small = work / "small.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(small)
        images = [small, photo_jpeg(work / "photo_6000x4000.jpg"), uniform_png(work / "uniform_20000x20000.png",
                                                                                 20000, 20000)]
        print(f"python {platform.python_version()}, torch {version('torch')}, Pillow {Image.__version__}, "
              f"{platform.machine()}; run {run}; address-space limit {args.limit_gb:g} GB")
        base = None
        for image in images:
            out = work / "out" / image.stem
            shutil.rmtree(out, ignore_errors=True)
            r = measure(run, image, out, args.limit_gb)
            base = r["peak_mib"] if base is None else base
            extra = "" if r["peak_mib"] is None or base is None else f" (+{r['peak_mib'] - base:.0f} MiB over 48x48)"
            peak = "failed" if r["peak_mib"] is None else f"{r['peak_mib']:.0f} MiB"
            print(f"{r['image']:26s} {r['file_mb']:6.2f} MB  peak RSS {peak}{extra}  {r['wall_s']:.1f} s  "
                  f"exit {r['exit']}  map {r.get('map_shape')}  written {r.get('written_mb', 0):.2f} MB"
                  + (f"  error: {r['error']}" if "error" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
