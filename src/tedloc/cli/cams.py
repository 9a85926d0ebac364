"""``tedloc cams``: compute a split's pseudo-label maps once and cache them on disk."""
from __future__ import annotations

import argparse

from tedloc.cli.clip_args import add_clip_arguments, training_free_from_args
from tedloc.cli.commands import command
from tedloc.cli.map_args import add_target_layer_argument
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.errors import TedlocError


def _cams(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.methods import compute_run_map_cache, list_methods
    from tedloc.pseudolabels import compute_map_cache

    runtime = runtime_from_args(args)
    options = dict(classes=args.classes, method=args.source, size=args.size, batch_size=args.batch_size,
                   workers=args.workers)
    if args.source in list_methods("training-free"):
        if args.run:
            raise TedlocError(f"--source {args.source} needs no --run (it is training-free: give --clip)")
        if args.target_layer:
            raise TedlocError(f"--target-layer picks the layer of a run's post-hoc maps; --source {args.source} has "
                              f"none")
        class_names = load_dataset(args.data, splits=[args.split]).class_names
        model = training_free_from_args(args.source, class_names, args, runtime)
        cache = compute_map_cache(model, args.data, args.split, args.out, runtime=runtime,
                                  model_record=model.record(), **options)
    else:
        if not args.run:
            raise TedlocError(f"--source {args.source} needs --run (a classifier run from `tedloc pretrain`)")
        cache = compute_run_map_cache(args.run, args.data, args.split, args.out, runtime=runtime,
                                      target_layer=args.target_layer, **options)
    if not runtime.dist.is_main:
        return 0
    grid = (f"each on its image's own grid (up to {cache.size[0]}x{cache.size[1]})" if cache.shapes is not None
            else f"of {cache.size[0]}x{cache.size[1]}")
    print(f"{args.out}: {len(cache)} maps {grid} (float16), source {cache.source['method']} "
          f"({cache.source['classes']} classes)")
    return 0


@command("cams", help="compute and cache the pseudo-label maps of a split: CAM / Grad-CAM / Score-CAM / ... of a "
                      "classifier run, or "
                      "CLIP-ES and the other training-free CLIP maps (resumable)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc cams``."""
    from tedloc.pseudolabels import MAP_SOURCES

    parser.add_argument("--source", "--method", dest="source", choices=MAP_SOURCES.names(), default="cam",
                        help="; ".join(f"{n}: {MAP_SOURCES.get(n).description}" for n in MAP_SOURCES.names())
                        + " (default cam)")
    parser.add_argument("--run", help="a classifier run (tedloc pretrain, nlccam), for --source cam and the "
                                      "post-hoc maps (gradcam, scorecam, ...)")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="train", help="the split whose maps are made (default train)")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--classes", choices=("true", "pred"), default="true",
                        help="maps of the true class (pseudo-labels) or of the predicted one (default true)")
    parser.add_argument("--size", type=int, help="stored map side (default: the source's own resolution: CAM "
                                                 "features, the CLIP patch grid; the post-hoc maps: input/4)")
    add_target_layer_argument(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    add_clip_arguments(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_cams)
