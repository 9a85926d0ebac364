"""``tedloc report``: one self-contained HTML page of a recipe folder, a run or an evaluation."""
from __future__ import annotations

import argparse

from tedloc.cli.commands import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _report(args: argparse.Namespace) -> int:
    from tedloc.report import write_report

    path = write_report(args.path, args.out, gallery=args.gallery, pool=args.pool, runtime=runtime_from_args(args))
    print(f"wrote {path} (open it in a browser; every picture is inside the page)")
    return 0


@command("report", help="an HTML page of results: tables, threshold and training curves, errors, a gallery")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc report``."""
    parser.add_argument("path", help="a recipe folder (tedloc demo/bench: results.json), a run folder, an "
                                     "evaluation JSON (tedloc evaluate --json) or a protocol table JSON "
                                     "(tedloc protocol-table --json)")
    parser.add_argument("--out", help="the HTML file (default: report.html in the folder, or beside the JSON)")
    parser.add_argument("--gallery", type=int, default=4,
                        help="test images per gallery group: the best, the worst and random ones (default 4; 0: none)")
    parser.add_argument("--pool", type=int, default=300,
                        help="test images ranked for the gallery, evenly spaced over the split (default 300)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_report)
