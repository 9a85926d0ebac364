"""``tedloc evaluate-maps``: score saved score maps with the standard WSOL protocol."""
from __future__ import annotations

import argparse
import json
import os
import sys

from tedloc.cli import command
from tedloc.cli.clip_args import add_clip_arguments, training_free_from_args
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.data import load_dataset
from tedloc.errors import TedlocError
from tedloc.eval import THRESHOLD_MODES, evaluate_map_folder
from tedloc.utils.io import atomic_write_text, check_writable

_ORDER = ("map", "map_class", "map_size", "MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70", "PxAP",
          "mIoU", "GTKnownLoc", "Top1Loc", "Top5Loc", "CL@1", "CL@5", "threshold")


def format_metrics(metrics: dict) -> str:
    """A two-column table of the headline metrics."""
    rows = [(k, metrics[k]) for k in _ORDER if k in metrics]
    rows += [(k, v) for k, v in metrics.items() if k.startswith("error/")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows)


def report(metrics: dict, title: str, json_path: str | None) -> int:
    """Print the table under ``title`` (and one per extra map), say on stderr which metrics were not
    computed and why, and write the metrics as JSON if asked."""
    for note in metrics.get("not_computed", []):
        print(f"note: {note}", file=sys.stderr)
    print(title)
    print(format_metrics(metrics))
    for kind, other in metrics.get("maps", {}).items():
        print(f"\nmap {kind!r}:")
        print(format_metrics(other))
    if json_path:
        atomic_write_text(json_path, json.dumps(metrics, indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before the evaluation, not after it, when its results cannot be written (an ``OSError``)."""
    if args.json:
        check_writable(args.json)
    if getattr(args, "save_threshold", False) and args.run and os.path.isdir(args.run):
        from tedloc.engine.run_folder import RunFolder

        check_writable(RunFolder(args.run).metadata_path)


def _evaluate_maps(args: argparse.Namespace) -> int:
    _check_outputs(args)
    dataset = load_dataset(args.data, splits=[args.split])
    metrics = evaluate_map_folder(dataset[args.split], args.maps, workers=args.workers, interval=args.interval,
                                  mode=args.mode, tau=args.tau, num_classes=dataset.num_classes)
    return report(metrics, f"{args.split}: {metrics['images']} maps, threshold mode {args.mode}", args.json)


@command("evaluate-maps", help="score a folder of <image_id>.npy score maps (MaxBoxAcc, MaxBoxAccV2, PxAP, ...)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc evaluate-maps``."""
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="test", help="the split the maps are of")
    parser.add_argument("--maps", required=True, help="folder with <image_id>.npy maps (and <image_id>.scores.npy)")
    parser.add_argument("--interval", type=float, default=0.001,
                        help="CAM threshold interval (default 0.001, wsolevaluation's final evaluation)")
    parser.add_argument("--mode", choices=list(THRESHOLD_MODES), default="oracle",
                        help="oracle: best threshold on this split; fixed: --tau; otsu: per map")
    parser.add_argument("--tau", type=float, help="threshold of --mode fixed")
    parser.add_argument("--json", help="write the metrics (and curves) as JSON here")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes (results are identical for any number)")
    parser.set_defaults(func=_evaluate_maps)


def _localizer(args: argparse.Namespace, runtime, dataset):
    """The localizer to evaluate and its name: a run's (``--run``) or a training-free one (``--method``)."""
    from tedloc.models.localizer import use_map

    if bool(args.run) == bool(args.method):
        raise TedlocError("give either --run (a trained run) or --method (a training-free localizer)")
    if args.method:
        if args.save_threshold:
            raise TedlocError("--save-threshold stores the threshold in a run; --method has none")
        if args.map:
            raise TedlocError(f"--map picks among a run's maps; {args.method} has one")
        return training_free_from_args(args.method, dataset.class_names, args, runtime), args.method
    from tedloc.methods import load_model

    localizer = use_map(load_model(args.run, runtime=runtime), args.map, args.run)
    if dataset.class_names != localizer.class_names:
        raise TedlocError(f"{args.data} has other classes than the run {args.run} was trained on")
    return localizer, args.run


def _save_vis(localizer, dataset, args: argparse.Namespace, metrics: dict) -> None:
    """``--save-vis N``: N test images of each group (best, worst, random) drawn into ``--vis-dir``."""
    from pathlib import Path

    from tedloc.recipes.report import gallery_pictures

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
    from tedloc.engine.distributed import Distributed
    from tedloc.eval.localizer_eval import evaluate_localizer

    dist, runtime = Distributed.from_env(runtime_from_args(args))
    dist.on_main(lambda: _check_outputs(args))
    if args.save_threshold and args.mode != "oracle":
        raise TedlocError("--save-threshold stores the best threshold of --mode oracle")
    if args.save_vis < 0:
        raise TedlocError(f"--save-vis takes a number of images >= 0, got {args.save_vis}")
    dataset = load_dataset(args.data, splits=[args.split])
    localizer, name = _localizer(args, runtime, dataset)
    if args.save_threshold and not dataset[args.split].has_boxes:
        raise TedlocError(f"--save-threshold needs GT boxes; split {args.split!r} of {args.data} has none")
    metrics = evaluate_localizer(localizer, dataset[args.split], batch_size=args.batch_size, workers=args.workers,
                                 all_maps=True, interval=args.interval, mode=args.mode, tau=args.tau,
                                 num_classes=dataset.num_classes, dist=dist, map_class=args.map_class,
                                 map_size=args.map_size)
    if not dist.is_main:  # the first process reports and writes
        return 0
    if args.method:
        metrics["model"] = localizer.record()
    code = report(metrics, f"{name} on {args.split}: {metrics['images']} images, threshold mode {args.mode}",
                  args.json)
    if args.save_threshold:
        from tedloc.engine.run_folder import RunFolder

        run = RunFolder(args.run)
        run.update_metadata(threshold=metrics["threshold"],
                            threshold_source={"split": args.split, "data": str(args.data), "criterion": "MaxBoxAcc"})
        print(f"stored threshold {metrics['threshold']} in {run.metadata_path}")
    if args.save_vis:
        _save_vis(localizer, dataset, args, metrics)
    return code


@command("evaluate", help="evaluate a trained run (CAM baseline, TeD-Loc, ...) or a training-free CLIP localizer "
                          "(clip-es, clip, sclip, naclip) on a split")
def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc evaluate``."""
    from tedloc.eval.localizer_eval import MAP_CLASSES
    from tedloc.zeroshot import TRAINING_FREE

    parser.add_argument("--run", help="run folder (or --method)")
    parser.add_argument("--method", choices=TRAINING_FREE.names(),
                        help="a training-free localizer instead of a run: " + "; ".join(
                            f"{n}: {TRAINING_FREE.get(n).description}" for n in TRAINING_FREE.names()))
    parser.add_argument("--data", required=True, help="dataset directory (same classes as the run)")
    parser.add_argument("--split", default="test", help="the split to evaluate (default test)")
    parser.add_argument("--interval", type=float, default=0.001,
                        help="CAM threshold interval (default 0.001, wsolevaluation's final evaluation: 1,000 "
                             "thresholds)")
    parser.add_argument("--mode", choices=list(THRESHOLD_MODES), default="oracle",
                        help="oracle: best threshold on this split; fixed: --tau; otsu: per map (default oracle)")
    parser.add_argument("--tau", type=float, help="threshold of --mode fixed")
    parser.add_argument("--map-class", choices=MAP_CLASSES, default="true",
                        help="whose map a class-dependent map (CAM, TeD-Loc's class map, CLIP) is: true, the true "
                             "class's (GT-known, as wsolevaluation and the papers; the predicted class's is "
                             "scored beside it as KIND@pred), or pred, the predicted class's (no label used); "
                             "Top-1/5 Loc use the prediction either way (default true)")
    parser.add_argument("--map-size", type=int,
                        help="side of the square the maps are resized to (bicubic) and scored at, boxes rescaled "
                             "to it (default: the input size; wsolevaluation 224, the TeD-Loc paper 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    parser.add_argument("--map", help="which map, for methods with several (TeD-Loc: g or class); all are "
                        "scored, this one is reported first")
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
