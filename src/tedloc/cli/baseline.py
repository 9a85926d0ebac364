"""``tedloc baseline centered-box``: the trivial baseline of a dataset split."""
from __future__ import annotations

import argparse
import json

from tedloc.cli.commands import command
from tedloc.cli.output import format_metrics
from tedloc.data import load_dataset
from tedloc.utils.io import atomic_write_text


def _centered(args: argparse.Namespace) -> int:
    from tedloc.methods.centered_box import centered_box_baseline

    split = load_dataset(args.data, splits=[args.split])[args.split]
    fraction, metrics = centered_box_baseline(split, args.size)
    metrics["box_fraction"] = fraction
    metrics.pop("curves", None)
    print(f"centered box, best side {fraction:.2f} of the image ({args.split}, maps {args.size}x{args.size})")
    print(format_metrics(metrics))
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=1) + "\n")
    return 0


@command("baseline", help="trivial baselines (centered box of the best fixed size)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc baseline`` and its ``centered-box`` subcommand."""
    sub = parser.add_subparsers(dest="baseline", metavar="<baseline>", required=True)
    p = sub.add_parser("centered-box", help="a centered square of the best fixed size, no image looked at")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="test", help="the split scored (its side chosen on val)")
    p.add_argument("--size", type=int, default=224, help="map size (the input size of the compared methods)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.set_defaults(func=_centered)
