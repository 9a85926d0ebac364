"""``tedloc predict``: class, map and box for new images, no label needed."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tedloc.cli.commands import command
from tedloc.cli.map_args import POSTHOC_MAPS_HELP, add_target_layer_argument
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.errors import TedlocError

if TYPE_CHECKING:
    from tedloc.inference import Prediction


def _threshold(text: str | None):
    if text is None or text == "otsu":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threshold must be a number in [0, 1) or 'otsu', got {text!r}") from None


def _smoothing(text: str) -> float:
    """``--box-smoothing``: a factor in [0, 1) (0: off)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"--box-smoothing must be in [0, 1) (0: off), got {text!r}")
    return value


def _pixels(text: str) -> int | None:
    """``--max-pixels``: a positive count (``20000*20000`` style products allowed) or ``none``."""
    if text.lower() == "none":
        return None
    try:
        value = math.prod(int(part) for part in text.split("*"))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--max-pixels must be a positive number of pixels or 'none', got {text!r}")
    return value


def _output_names(sources: list[str]) -> list[str]:
    """File stems for the outputs; images of the same name in different folders get a numeric prefix."""
    stems = [Path(s).stem for s in sources]
    return [f"{i:04d}_{s}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]


def _write(out: Path, name: str, p: "Prediction", max_pixels: int | None) -> None:
    """``name``.json, .map.npy (float16, the map as returned) and .overlay.png (at the map's size) in ``out``."""
    import numpy as np
    from PIL import Image

    from tedloc.data.images import load_image_reduced
    from tedloc.utils.io import atomic_write, atomic_write_text
    from tedloc.viz import render_overlay

    map_size = (p.map.shape[1], p.map.shape[0])
    image, _ = load_image_reduced(p.source, map_size, max_pixels)  # first: an unreadable image writes nothing
    if image.size != map_size:
        image = image.resize(map_size, Image.BILINEAR)
    overlay = render_overlay(image, p.map, p.box, caption=f"{p.label} {p.top_classes[0][2]:.2f}", boxes_in=p.size)
    record = {**p.to_dict(), "map": f"{name}.map.npy", "overlay": f"{name}.overlay.png"}
    with atomic_write(out / record["map"], "wb") as f:
        np.save(f, p.map.astype(np.float16))
    with atomic_write(out / record["overlay"], "wb") as f:
        overlay.save(f, format="PNG")
    atomic_write_text(out / f"{name}.json", json.dumps(record, indent=1) + "\n")


def _report(name: str, result: "Prediction | TedlocError", out: Path | None, max_pixels: int | None) -> bool:
    """Print one line for an image (stdout; an error on stderr) and write its files; False if it failed."""
    try:
        if isinstance(result, TedlocError):
            raise result
        best = ", ".join(f"{n} {s:.3f}" for _, n, s in result.top_classes)
        print(f"{result.source}: box {list(result.box)}  [{best}]")
        if out is not None:
            _write(out, name, result, max_pixels)
        return True
    except TedlocError as e:
        print(f"error: {e}", file=sys.stderr)
        return False


def _predict_videos(localizer, videos: list[str], out: Path | None, args: argparse.Namespace) -> int:
    """Predict every frame of each video (file or frames folder); returns how many failed."""
    from tedloc.inference.video import predict_video

    failed = 0
    for name, video in zip(_output_names(videos), videos):
        try:
            summary = predict_video(localizer, video, out, name=name, box_smoothing=args.box_smoothing,
                                    fps=args.fps, max_side=args.map_max_side)
        except TedlocError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        index, label, score = summary.video_class
        print(f"{video}: {summary.frames} frames at {summary.fps:g} fps, video class {label} {score:.3f}"
              + (f"; records in {summary.files['records']}" if summary.files else ""))
        for problem in summary.problems:
            print(f"warning: {problem}", file=sys.stderr)
    return failed


def _predict(args: argparse.Namespace) -> int:
    from tedloc.data.video_io import is_video_input
    from tedloc.inference import Localizer

    runtime = runtime_from_args(args)
    localizer = Localizer.from_run(args.run, threshold=args.threshold, map_kind=args.map, topk=args.topk,
                                   max_pixels=args.max_pixels, map_max_side=args.map_max_side, runtime=runtime,
                                   batch_size=args.batch_size, compile=args.compile, target_layer=args.target_layer)
    out = Path(args.out) if args.out else None
    # a folder is a frames folder even without frames: VideoReader says so in one line (not "no such image file")
    videos = [p for p in args.images if is_video_input(p) or Path(p).is_dir()]
    images = [p for p in args.images if p not in videos]
    failed_videos = _predict_videos(localizer, videos, out, args) if videos else 0
    results = zip(_output_names(images), localizer.iter_predictions(images))
    done = sum(_report(name, result, out, localizer.max_pixels) for name, result in results)
    failed = len(images) - done + failed_videos
    if out is not None and images:
        print(f"wrote {done} image records (JSON, map .npy, overlay PNG) to {out}")
    if failed:
        print(f"{failed} of {len(args.images)} inputs could not be read (see the errors above)")
    return 2 if failed else 0


@command("predict", help="predict class (top-k), localization map and box for images, without labels")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc predict``."""
    from tedloc.data.images import MAX_PIXELS
    from tedloc.inference import MAP_MAX_SIDE

    parser.add_argument("--run", required=True, help="a trained run folder (TeD-Loc, CAM baseline, ...)")
    parser.add_argument("images", nargs="+", help="image files, video files (MP4, WebM, AVI, MKV, MOV) or folders "
                                                  "of frames: a video gives one record per frame (JSON lines), its "
                                                  "maps and an annotated video")
    parser.add_argument("--out", metavar="DIR",
                        help="write <name>.json, <name>.map.npy and <name>.overlay.png here (videos: JSON lines, "
                             "maps and an annotated video) (default: print only, one line per image with its box "
                             "and top classes and one per video; nothing is written)")
    parser.add_argument("--threshold", type=_threshold, default=None,
                        help="map threshold in [0, 1) or 'otsu' (default: the one stored in the run)")
    parser.add_argument("--map", help="which map, for methods with several (TeD-Loc: g (default) or class; "
                        + POSTHOC_MAPS_HELP + ")")
    add_target_layer_argument(parser)
    parser.add_argument("--topk", type=int, default=5, help="classes reported per image")
    parser.add_argument("--max-pixels", type=_pixels, default=MAX_PIXELS, metavar="N",
                        help=f"refuse image files with more pixels, e.g. 20000*20000 (the default, {MAX_PIXELS:,}); "
                             f"'none': no bound")
    parser.add_argument("--map-max-side", type=int, default=MAP_MAX_SIDE, metavar="N",
                        help=f"maps (and overlays) of larger images are written at N pixels on their long side, "
                             f"boxes stay in image pixels (default {MAP_MAX_SIDE})")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--box-smoothing", type=_smoothing, default=0.0, metavar="A",
                        help="videos: each box becomes A x box + (1 - A) x the previous frame's (causal exponential "
                             "moving average; 0, the default, is off; the raw box stays in the record)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of a folder of frames (default 25)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the forward pass (pays off on GPUs and for many images)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_predict)
