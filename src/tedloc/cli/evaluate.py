"""``tedloc evaluate-maps``: score saved score maps with the standard WSOL protocol."""
from __future__ import annotations

import argparse
import json
import os

from tedloc.cli import command
from tedloc.data import load_dataset
from tedloc.eval import THRESHOLD_MODES, evaluate_map_folder
from tedloc.utils.io import atomic_write_text

_ORDER = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70", "PxAP", "mIoU",
          "GTKnownLoc", "Top1Loc", "Top5Loc", "CL@1", "CL@5", "threshold")


def format_metrics(metrics: dict) -> str:
    """A two-column table of the headline metrics."""
    rows = [(k, metrics[k]) for k in _ORDER if k in metrics]
    rows += [(k, v) for k, v in metrics.items() if k.startswith("error/")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows)


def report(metrics: dict, title: str, json_path: str | None) -> int:
    """Print the table under ``title`` and write the metrics as JSON if asked."""
    print(title)
    print(format_metrics(metrics))
    if json_path:
        atomic_write_text(json_path, json.dumps(metrics, indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def _evaluate_maps(args: argparse.Namespace) -> int:
    split = load_dataset(args.data, splits=[args.split])[args.split]
    metrics = evaluate_map_folder(split, args.maps, workers=args.workers, interval=args.interval, mode=args.mode,
                                  tau=args.tau)
    return report(metrics, f"{args.split}: {metrics['images']} maps, threshold mode {args.mode}", args.json)


@command("evaluate-maps", help="score a folder of <image_id>.npy score maps (MaxBoxAcc, MaxBoxAccV2, PxAP, ...)")
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--maps", required=True, help="folder with <image_id>.npy maps (and <image_id>.scores.npy)")
    parser.add_argument("--interval", type=float, default=0.01, help="CAM threshold interval (0.001 works too)")
    parser.add_argument("--mode", choices=list(THRESHOLD_MODES), default="oracle",
                        help="oracle: best threshold on this split; fixed: --tau; otsu: per map")
    parser.add_argument("--tau", type=float, help="threshold of --mode fixed")
    parser.add_argument("--json", help="write the metrics (and curves) as JSON here")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes (results are identical for any number)")
    parser.set_defaults(func=_evaluate_maps)


def _evaluate(args: argparse.Namespace) -> int:
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods import load_localizer

    localizer = load_localizer(args.run)
    dataset = load_dataset(args.data, splits=[args.split])
    if dataset.class_names != localizer.class_names:
        print(f"error: {args.data} has other classes than the run was trained on", flush=True)
        return 2
    metrics = evaluate_localizer(localizer, dataset[args.split], batch_size=args.batch_size, workers=args.workers,
                                 interval=args.interval, mode=args.mode, tau=args.tau)
    return report(metrics, f"{args.run} on {args.split}: {metrics['images']} images, threshold mode {args.mode}",
                  args.json)


@command("evaluate", help="evaluate a trained run (CAM baseline, TeD-Loc, ...) on a split")
def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--data", required=True, help="dataset directory (same classes as the run)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--mode", choices=list(THRESHOLD_MODES), default="oracle")
    parser.add_argument("--tau", type=float)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", help="write the metrics as JSON here")
    parser.set_defaults(func=_evaluate)
