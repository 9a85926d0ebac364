"""``tedloc baseline centered-box|centered-gaussian``: the no-look baselines of a dataset split."""
from __future__ import annotations

import argparse
import json

from tedloc.cli.commands import command
from tedloc.cli.output import format_metrics
from tedloc.data import load_dataset
from tedloc.utils.io import atomic_write_text


def _report(args: argparse.Namespace, title: str, metrics: dict) -> int:
    metrics.pop("curves", None)
    print(title)
    print(format_metrics(metrics))
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=1) + "\n")
    return 0


def _centered(args: argparse.Namespace) -> int:
    from tedloc.methods.centered_box import centered_box_baseline, centered_box_metrics

    dataset = load_dataset(args.data)
    chosen_on = "val" if "val" in dataset.splits and dataset["val"].has_boxes else args.split
    fraction, _ = centered_box_baseline(dataset[chosen_on], args.size)
    metrics = centered_box_metrics(dataset[args.split], args.size, fraction)
    metrics.update(box_fraction=fraction, chosen_on=chosen_on)
    return _report(args, f"centered box, side {fraction:.2f} of the image (the best on {chosen_on}), scored on "
                         f"{args.split}, maps {args.size}x{args.size}", metrics)


def _gaussian(args: argparse.Namespace) -> int:
    from tedloc.eval import eval_protocol
    from tedloc.methods.centered_box import centered_gaussian_metrics

    split = load_dataset(args.data, splits=[args.split])[args.split]
    protocol = eval_protocol("standard", **({} if args.interval is None else {"interval": args.interval}))
    metrics = centered_gaussian_metrics(split, args.size, args.sigma, protocol)
    metrics["sigma"] = args.sigma
    return _report(args, f"centered Gaussian, sigma {args.sigma} of the half side, scored on {args.split} (thresholds "
                         f"every {protocol.interval}), maps {args.size}x{args.size}", metrics)


@command("baseline", help="the no-look baselines (centered box of the best fixed size, centered Gaussian)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc baseline`` and its subcommands."""
    from tedloc.methods.centered_box import CENTERED_GAUSSIAN_SIGMA

    sub = parser.add_subparsers(dest="baseline", metavar="<baseline>", required=True)
    p = sub.add_parser("centered-box", help="a centered square of the best fixed size, no image looked at")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="test", help="the split scored (its side chosen on val when val has boxes, "
                                                   "else on this split)")
    p.add_argument("--size", type=int, default=224, help="map size (the input size of the compared methods)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.set_defaults(func=_centered)
    p = sub.add_parser("centered-gaussian", help="one centered Gaussian map for every image, scored at every "
                                                 "threshold (Choe et al. 2020's center baseline)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="test", help="the split scored")
    p.add_argument("--size", type=int, default=224, help="map size (the input size of the compared methods)")
    p.add_argument("--sigma", type=float, default=CENTERED_GAUSSIAN_SIGMA,
                   help=f"standard deviation in units of half the map's side (default {CENTERED_GAUSSIAN_SIGMA})")
    p.add_argument("--interval", type=float, help="threshold interval (default: the standard protocol's)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.set_defaults(func=_gaussian)
