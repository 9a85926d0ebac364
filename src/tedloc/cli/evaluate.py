"""``tedloc evaluate-maps`` (saved score maps) and ``tedloc evaluate`` (a run, or a training-free localizer)."""
from __future__ import annotations

import argparse
import os
import sys

from tedloc.cli.clip_args import add_clip_arguments, training_free_from_args
from tedloc.cli.commands import command
from tedloc.cli.map_args import POSTHOC_MAPS_HELP, add_target_layer_argument
from tedloc.cli.eval_args import add_protocol_arguments, protocol_from_args
from tedloc.cli.output import report
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.data import load_dataset
from tedloc.errors import TedlocError
from tedloc.eval import evaluate_map_folder
from tedloc.eval.evaluator import VAL_THRESHOLD_METRICS
from tedloc.utils.io import check_writable

def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before the evaluation, not after it, when its results cannot be written (an ``OSError``)."""
    if args.json:
        check_writable(args.json)


def _evaluate_maps(args: argparse.Namespace) -> int:
    _check_outputs(args)
    dataset = load_dataset(args.data, splits=[args.split])
    protocol = protocol_from_args(args)
    metrics = evaluate_map_folder(dataset[args.split], args.maps, protocol, workers=args.workers,
                                  num_classes=dataset.num_classes)
    return report(metrics, f"{args.split}: {metrics['images']} maps, threshold mode {protocol.mode}", args.json)


@command("evaluate-maps", help="score a folder of <image_id>.npy score maps (MaxBoxAcc, MaxBoxAccV2, PxAP, ...)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc evaluate-maps``."""
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="test", help="the split the maps are of")
    parser.add_argument("--maps", required=True, help="folder with <image_id>.npy maps (and <image_id>.scores.npy)")
    add_protocol_arguments(parser, "standard", ("interval", "mode", "tau", "iou_thresholds"))
    parser.add_argument("--json", help="write the metrics (and curves) as JSON here")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes (results are identical for any number)")
    parser.set_defaults(func=_evaluate_maps)


def _training_free(args: argparse.Namespace, runtime, dataset):
    """The training-free localizer of ``--method`` (a run has none of --save-threshold and --map)."""
    if args.save_threshold:
        raise TedlocError("--save-threshold stores the threshold in a run; --method has none")
    if args.map:
        raise TedlocError(f"--map picks among a run's maps; {args.method} has one")
    if args.target_layer:
        raise TedlocError(f"--target-layer picks the layer of a run's post-hoc maps; {args.method} has none")
    return training_free_from_args(args.method, dataset.class_names, args, runtime)


def _save_vis(localizer, dataset, args: argparse.Namespace, metrics: dict) -> None:
    """``--save-vis N``: N test images of each group (best, worst, random) drawn into ``--vis-dir``."""
    from pathlib import Path

    from tedloc.report import gallery_pictures

    split = dataset[args.split]
    threshold = metrics.get("threshold")
    if not isinstance(threshold, float):
        threshold = "otsu"
    folder = Path(args.vis_dir or (Path(args.json).with_suffix("") if args.json else "vis"))
    pictures = gallery_pictures(localizer, split, dataset.class_names, threshold, args.save_vis)
    if not pictures:
        print(f"note: --save-vis draws GT boxes; split {args.split!r} has none", file=sys.stderr)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for group, items in pictures.items():
        for k, (image_id, picture, _, iou) in enumerate(items):
            picture.save(folder / f"{group}_{k:02d}_{Path(image_id).stem}_iou{iou:.2f}.png")
    print(f"drew {sum(len(v) for v in pictures.values())} test images (best, worst, random; threshold "
          f"{threshold}) into {folder}")


def _evaluate(args: argparse.Namespace) -> int:
    from tedloc.eval import evaluate_localizer
    from tedloc.methods import evaluate_run, load_model

    if bool(args.run) == bool(args.method):
        raise TedlocError("give either --run (a trained run) or --method (a training-free localizer)")
    if args.save_vis < 0:
        raise TedlocError(f"--save-vis takes a number of images >= 0, got {args.save_vis}")
    runtime = runtime_from_args(args)
    runtime.dist.on_main(lambda: _check_outputs(args))
    protocol = protocol_from_args(args)
    localizer = None
    if args.run:
        metrics = evaluate_run(args.run, args.data, args.split, protocol, runtime=runtime, map_kind=args.map,
                               batch_size=args.batch_size, workers=args.workers, store_threshold=args.save_threshold,
                               target_layer=args.target_layer)
    else:
        dataset = load_dataset(args.data, splits=[args.split])
        localizer = _training_free(args, runtime, dataset)
        metrics = evaluate_localizer(localizer, dataset[args.split], protocol, batch_size=args.batch_size,
                                     workers=args.workers, all_maps=True, num_classes=dataset.num_classes,
                                     dist=runtime.dist)
        metrics["model"] = localizer.record()
        if "MaxBoxAcc" in metrics:  # Top-k Loc at a threshold chosen without test boxes: none to take
            metrics.setdefault("not_computed", []).append(
                f"{', '.join(VAL_THRESHOLD_METRICS)} not computed: a training-free method has no threshold chosen "
                f"on val (score at one with --mode fixed --tau T)")
    if not runtime.dist.is_main:  # the first process reports and writes
        return 0
    name = args.run or args.method
    val = "; @val_thr: at the run's val threshold" if "val_threshold" in metrics else ""
    code = report(metrics, f"{name} on {args.split}: {metrics['images']} images, threshold mode {protocol.mode}{val}",
                  args.json)
    if args.save_threshold:
        print(f"stored threshold {metrics['threshold']} in {os.path.join(args.run, 'model.json')}")
    if args.save_vis:
        localizer = localizer or load_model(args.run, runtime=runtime, map_kind=args.map,
                                            target_layer=args.target_layer)
        _save_vis(localizer, load_dataset(args.data, splits=[args.split]), args, metrics)
    return code


@command("evaluate", help="evaluate a trained run (CAM baseline, TeD-Loc, ...) or a training-free CLIP localizer "
                          "(clip-es, clip, sclip, naclip) on a split")
def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc evaluate``."""
    from tedloc.methods import get_method, list_methods

    names = list_methods("training-free")
    parser.add_argument("--run", help="run folder (or --method)")
    parser.add_argument("--method", choices=names, help="a training-free localizer instead of a run: " + "; ".join(
        f"{n}: {get_method(n).description}" for n in names))
    parser.add_argument("--data", required=True, help="dataset directory (same classes as the run)")
    parser.add_argument("--split", default="test", help="the split to evaluate (default test)")
    add_protocol_arguments(parser, "standard")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    parser.add_argument("--map", help="which map, for methods with several (TeD-Loc: g or class; "
                        + POSTHOC_MAPS_HELP + "); the method's maps are scored, this one is reported first")
    add_target_layer_argument(parser)
    parser.add_argument("--save-threshold", action="store_true",
                        help="store the best threshold found on this split in the run (used by `tedloc predict`)")
    parser.add_argument("--json", help="write the metrics as JSON here")
    parser.add_argument("--save-vis", type=int, default=0, metavar="N",
                        help="draw N test images of each group, the best, the worst and random ones by the IoU of "
                             "the predicted box (map over the image, GT box green, predicted box white, true and "
                             "predicted class), at the operating threshold found (default 0: none)")
    parser.add_argument("--vis-dir", help="folder of the --save-vis pictures (default: the --json path without its "
                                          "suffix, else ./vis)")
    add_clip_arguments(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_evaluate)
