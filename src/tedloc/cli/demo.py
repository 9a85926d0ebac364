"""``tedloc demo``: the whole pipeline on the built-in synthetic benchmark, in a few minutes on a CPU."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
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
    steps = next_steps(out)
    if steps:
        print("try (from this folder):")
        print("\n".join(f"  {line}" for line in steps))
    return 0


def tedloc_command() -> str:
    """How to run this tedloc from the current folder in a fresh shell, whose PATH need not hold the virtual
    environment: the ``tedloc`` script beside the running interpreter (``.venv/bin/tedloc`` under the
    repository root), else ``<python> -m tedloc``."""
    bin_dir = Path(sys.executable).parent
    script = bin_dir / "tedloc"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(_from_here(script))
    return f"{shlex.quote(_from_here(Path(sys.executable)))} -m tedloc"


def _from_here(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it (``.venv/bin/tedloc``; ``./tedloc`` in it:
    a bare name would be looked up in PATH), else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
    return relative if os.sep in relative else f".{os.sep}{relative}"


def next_steps(out: Path) -> list[str]:
    """The commands the demo suggests at its end, each runnable as printed from the current folder: a prediction
    with each finished run (TeD-Loc on the test images of one class, TrCAM-V on a test shot's frames)."""
    from tedloc.data import load_dataset
    from tedloc.methods import is_finished_run

    tedloc = tedloc_command()
    predictions = shlex.quote(str(out / "predictions"))
    steps = []
    image_run, image_data = out / "runs" / "tedloc", out / "data"
    if is_finished_run(image_run) and (image_data / "dataset.yaml").is_file():
        image = load_dataset(image_data, splits=["test"])["test"].image_path(0)
        steps.append(f"{tedloc} predict --run {shlex.quote(str(image_run))} {shlex.quote(str(image.parent))}/*"
                     f"{image.suffix} "
                     f"--out {predictions}")
    video_run, video_data = out / "video" / "runs" / "trcamv", out / "video" / "data"
    if is_finished_run(video_run) and (video_data / "dataset.yaml").is_file():
        shot = load_dataset(video_data, splits=["test"])["test"].image_path(0)
        steps.append(f"{tedloc} predict --run {shlex.quote(str(video_run))} {shlex.quote(str(shot))} "
                     f"--out {predictions}  # a folder of frames, or any .mp4")
    return steps


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
