"""``tedloc demo``: the whole pipeline on the built-in synthetic benchmark, in a few minutes on a CPU."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tedloc.cli.commands import command
from tedloc.cli.output import summarize
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _demo(args: argparse.Namespace) -> int:
    from tedloc.data import SyntheticConfig, check_dataset, make_synthetic
    from tedloc.recipes import run_recipe
    from tedloc.recipes.presets import get_preset

    out = Path(args.out)
    start = time.perf_counter()
    print(f"[0] synthetic benchmark -> {out / 'data'}", flush=True)
    data = make_synthetic(out / "data", SyntheticConfig(seed=args.seed))
    print(summarize(data))
    report = check_dataset(data)
    if not report.ok:
        print("\n".join(report.problems))
        return 1
    recipe = get_preset("demo")
    recipe.pretrain.seed = recipe.tedloc.seed = recipe.vit.seed = recipe.dips.seed = args.seed
    runtime = runtime_from_args(args)
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime)
    if not args.no_video:
        _video_part(out, args.seed, runtime)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; report: {out / 'report.html'} (open it in a "
          f"browser), {out / 'report.md'}")
    print(f"try: tedloc predict --run {out / 'runs' / 'tedloc'} {out / 'data' / 'images' / 'test' / 'red_circle'}"
          f"/*.png --out {out / 'predictions'}")
    if not args.no_video:
        shot = out / "video" / "data" / "images" / "test" / "red_circle" / "video-000" / "shot-000"
        print(f"     tedloc predict --run {out / 'video' / 'runs' / 'trcamv'} {shot} --out {out / 'predictions'} "
              f"(a folder of frames, or any .mp4)")
    return 0


def _video_part(out: Path, seed: int, runtime) -> None:
    """The synthetic video benchmark, TrCAM-V (on the image part's ViT) and the CAM family, CorLoc."""
    from tedloc.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video
    from tedloc.recipes.video import run_video_recipe, video_preset

    video = out / "video"
    print(f"[video] synthetic video benchmark -> {video / 'data'}", flush=True)
    data = make_synthetic_video(video / "data", SyntheticVideoConfig(seed=seed))
    print(summarize(data))
    recipe = video_preset("demo", encoder_run=str(out / "runs" / "vit"))
    recipe.classifier.seed = recipe.trcamv.seed = seed
    run_video_recipe(data, video, recipe, log=lambda text: print(text, flush=True), runtime=runtime)


@command("demo", help="the whole pipeline on the built-in synthetic benchmarks (images: CAM, TeD-Loc, DiPS; video: "
                      "TrCAM-V and the CAM family; reports)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc demo``."""
    parser.add_argument("--out", default="runs/demo", help="folder for data, runs and the report")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the training")
    parser.add_argument("--no-video", action="store_true", help="leave out the video part (TrCAM-V, CorLoc)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_demo)
