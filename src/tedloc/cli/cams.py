"""``tedloc cams``: compute a split's pseudo-label maps once and cache them on disk."""
from __future__ import annotations

import argparse

from tedloc.cli import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _cams(args: argparse.Namespace) -> int:
    from tedloc.engine.distributed import Distributed
    from tedloc.methods.run_maps import compute_run_map_cache

    cache = compute_run_map_cache(args.run, args.data, args.split, args.out, classes=args.classes,
                                  method=args.method, size=args.size, batch_size=args.batch_size,
                                  workers=args.workers, runtime=runtime_from_args(args))
    if not Distributed.current().is_main:
        return 0
    print(f"{args.out}: {len(cache)} maps of {cache.size[0]}x{cache.size[1]} (float16), source {cache.source['method']}"
          f" ({cache.source['classes']} classes)")
    return 0


@command("cams", help="compute and cache the CAM / Grad-CAM pseudo-label maps of a split (resumable)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc cams``."""
    parser.add_argument("--run", required=True, help="a classifier run (tedloc pretrain)")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--classes", choices=("true", "pred"), default="true",
                        help="CAM of the true class (pseudo-labels) or of the predicted one")
    from tedloc.cams.sources import MAP_SOURCES

    parser.add_argument("--method", choices=MAP_SOURCES.names(), default="cam",
                        help="; ".join(f"{n}: {MAP_SOURCES.get(n).description}" for n in MAP_SOURCES.names()))
    parser.add_argument("--size", type=int, help="stored map side (default: CAM feature resolution; Grad-CAM: input/4)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_cams)
