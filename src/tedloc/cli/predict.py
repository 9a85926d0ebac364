"""``tedloc predict``: class, map and box for new images, no label needed."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tedloc.cli import command


def _threshold(text: str | None):
    if text is None or text == "otsu":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threshold must be a number in [0, 1) or 'otsu', got {text!r}") from None


def _output_names(sources: list[str]) -> list[str]:
    """File stems for the outputs; images of the same name in different folders get a numeric prefix."""
    stems = [Path(s).stem for s in sources]
    return [f"{i:04d}_{s}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from tedloc.data.images import load_image
    from tedloc.inference import Localizer
    from tedloc.utils.io import atomic_write, atomic_write_text
    from tedloc.viz import render_overlay

    localizer = Localizer.from_run(args.run, threshold=args.threshold, map_kind=args.map, topk=args.topk)
    predictions = localizer(args.images)
    out = Path(args.out) if args.out else None
    for name, p in zip(_output_names([p.source for p in predictions]), predictions):
        best = ", ".join(f"{n} {s:.3f}" for _, n, s in p.top_classes)
        print(f"{p.source}: box {list(p.box)}  [{best}]")
        if out is None:
            continue
        record = p.to_dict()
        record["map"] = f"{name}.map.npy"
        record["overlay"] = f"{name}.overlay.png"
        with atomic_write(out / record["map"], "wb") as f:
            np.save(f, p.map.astype(np.float16))
        overlay = render_overlay(load_image(p.source), p.map, p.box, caption=f"{p.label} {p.top_classes[0][2]:.2f}")
        with atomic_write(out / record["overlay"], "wb") as f:
            overlay.save(f, format="PNG")
        atomic_write_text(out / f"{name}.json", json.dumps(record, indent=1) + "\n")
    if out is not None:
        print(f"wrote {len(predictions)} records (JSON, map .npy, overlay PNG) to {out}")
    return 0


@command("predict", help="predict class (top-k), localization map and box for images, without labels")
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a trained run folder (TeD-Loc, CAM baseline, ...)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", help="write <name>.json, <name>.map.npy and <name>.overlay.png here")
    parser.add_argument("--threshold", type=_threshold, default=None,
                        help="map threshold in [0, 1) or 'otsu' (default: the one stored in the run)")
    parser.add_argument("--map", help="which map, for methods with several (TeD-Loc: g (default) or class)")
    parser.add_argument("--topk", type=int, default=5)
    parser.set_defaults(func=_predict)
