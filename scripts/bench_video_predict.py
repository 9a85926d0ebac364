"""Frames per second of ``tedloc predict`` on a video file: decode, predict, write records, maps and the annotated
video, as the command does.

    python scripts/bench_video_predict.py --run runs/demo/video/runs/trcamv --frames 300 --size 640x360 \\
        [--device cpu] [--json out.json]

The video is made first (the synthetic video benchmark's shots, resized to --size, H.264 MP4); the time counts
``predict_video`` only. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from tedloc.data.synthetic_video import SyntheticVideoConfig, render_shot
from tedloc.data.video_io import VideoWriter
from tedloc.inference import Localizer
from tedloc.inference.video import predict_video
from tedloc.utils.device import Runtime


def make_video(path: Path, frames: int, size: tuple[int, int], fps: float = 25.0) -> None:
    """A video of ``frames`` synthetic frames at ``size`` (shots of the benchmark, one after the other)."""
    cfg = SyntheticVideoConfig(min_frames=30, max_frames=30)
    written, shot = 0, 0
    with VideoWriter(path, fps) as writer:
        while written < frames:
            images, _ = render_shot(cfg, shot % cfg.classes, "test", 0, shot, (96, 72))
            for image in images[:frames - written]:
                writer.write(Image.fromarray(image).resize(size, Image.BILINEAR))
                written += 1
            shot += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run folder")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    runtime = Runtime.create(args.device, "auto")
    localizer = Localizer.from_run(args.run, runtime=runtime, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        make_video(video, args.frames, size)
        localizer(Image.new("RGB", size))  # warm-up
        start = time.perf_counter()
        summary = predict_video(localizer, video, Path(tmp) / "out")
        seconds = time.perf_counter() - start
        annotated = (Path(tmp) / "out" / "bench.annotated.mp4").stat().st_size
    result = {"frames": summary.frames, "size": list(size), "seconds": round(seconds, 2),
              "frames_per_second": round(summary.frames / seconds, 1), "batch_size": args.batch_size,
              "device": str(runtime.device), "precision": runtime.precision, "annotated_bytes": annotated,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "run": args.run, "date": time.strftime("%Y-%m-%d")}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
