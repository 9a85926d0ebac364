"""``tedloc bench tinyimagenet``: the documented recipe behind the Tiny ImageNet results."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tedloc.cli import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _tinyimagenet(args: argparse.Namespace) -> int:
    from tedloc.data import convert_tinyimagenet
    from tedloc.recipes import run_recipe
    from tedloc.recipes.presets import get_preset

    out = Path(args.out)
    start = time.perf_counter()
    data = out / "data"
    if not (data / "dataset.yaml").exists():
        print(f"[0] convert {args.src} -> {data}", flush=True)
        convert_tinyimagenet(args.src, data)
    recipe = get_preset(f"tinyimagenet-{args.preset}")
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime_from_args(args))
    print(f"bench finished in {(time.perf_counter() - start) / 60:.1f} min; {out / 'results.json'}, "
          f"{out / 'report.md'}")
    return 0


@command("bench", help="benchmark recipes on real data (Tiny ImageNet)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc bench`` and its ``tinyimagenet`` subcommand."""
    sub = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    p = sub.add_parser("tinyimagenet", help="convert, pretrain, CAM, TeD-Loc and its ablations, evaluate on test")
    p.add_argument("--src", required=True, help="extracted tiny-imagenet-200 folder")
    p.add_argument("--out", required=True, help="output folder (data/, runs/<method>/, results.json, report.md)")
    p.add_argument("--preset", choices=("quick", "full"), default="quick",
                   help="quick: about 15 min on 2 CPU cores; full: under an hour")
    add_runtime_arguments(p)
    p.set_defaults(func=_tinyimagenet)
