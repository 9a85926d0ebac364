"""The realistic protocol on the command line: pseudo-boxes, their scores, the selection table, noise."""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from tedloc.cli import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text


def _pseudo_boxes(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.protocol.box_files import read_box_file, score_boxes

    if args.action == "score":
        if not args.boxes:
            raise TedlocError("pseudo-boxes score needs --boxes FILE")
        split = load_dataset(args.data, splits=[args.split])[args.split]
        scores = score_boxes(split, read_box_file(args.boxes, split), args.rescale)
        if args.json:
            print(json.dumps(scores))
        else:
            where = f"{args.rescale}x{args.rescale}" if args.rescale else "original image pixels"
            print(f"{args.boxes} vs GT of {args.split} ({scores['images']} images, {where}): mIoU "
                  f"{scores['mIoU']:.2f}, IoU>=0.3 {scores['IoU>=30']:.2f} %, >=0.5 {scores['IoU>=50']:.2f} %, "
                  f">=0.7 {scores['IoU>=70']:.2f} %")
        return 0
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    if not (args.method and args.out):
        raise TedlocError("pseudo-boxes needs --method and --out (or the 'score' action)")
    options = {}
    if args.method in ("ss", "rpn"):
        options["fraction"] = args.fraction
    if args.method == "rpn" and args.rpn_weights:
        options["weights"] = None if args.rpn_weights == "random" else args.rpn_weights
    summary = make_pseudo_boxes(args.data, args.split, args.method, args.run, args.out, clip_model=args.clip_model,
                                runtime=runtime_from_args(args), **options)
    score = summary.get("score")
    tail = f"; vs GT: mIoU {score['mIoU']:.2f}, IoU>=0.5 {score['IoU>=50']:.2f} %" if score else ""
    print(f"{args.out}: {summary['images']} boxes ({args.method}){tail}")
    return 0


@command("pseudo-boxes", help="make pseudo-boxes for a split without GT (ss, cam, clip, rpn), or score a box file")
def configure_pseudo_boxes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("score",), help="'score': score --boxes against GT")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--method", choices=("ss", "cam", "clip", "rpn"))
    parser.add_argument("--run", help="classifier run (tedloc pretrain): CAM peak and box confidence")
    parser.add_argument("--out", help="box file to write (plus FILE.json with settings and score)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of proposals kept before the pointing game")
    parser.add_argument("--rpn-weights", help="'DEFAULT' (torchvision COCO weights), a local file, or 'random'")
    parser.add_argument("--clip-model", help="open_clip:<arch>@<tag> for --method clip")
    parser.add_argument("--boxes", help="box file to score (localization.txt format, one box per image)")
    parser.add_argument("--rescale", type=int, help="score after rescaling boxes to a square of this size")
    parser.add_argument("--json", action="store_true", help="print the score as JSON")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_pseudo_boxes)


def _supervision_sets(args, val):
    from tedloc.protocol.box_files import read_box_file

    sets = {"GT": val}
    for spec in args.pseudo_boxes or []:
        name, _, path = spec.partition("=")
        if not path:
            raise TedlocError(f"--pseudo-boxes takes NAME=FILE, got {spec!r}")
        boxes = read_box_file(path, val)
        sets[name] = val.with_boxes([boxes[i][None] for i in val.image_ids])
    return sets


def _protocol_table(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.protocol.selection import evaluate_checkpoint, format_table, list_checkpoints, protocol_table

    dataset = load_dataset(args.data, splits=["val", "test"])
    val, test = dataset["val"], dataset["test"]
    sets = _supervision_sets(args, val)
    results = {}
    runtime = runtime_from_args(args)
    for run in args.runs:
        for ckpt in list_checkpoints(run):
            results[ckpt] = evaluate_checkpoint(ckpt, sets, test, args.interval, runtime=runtime)
    table = protocol_table(results, list(sets))
    print(f"{len(results)} checkpoints of {len(args.runs)} runs; test MaxBoxAcc / mIoU (%)")
    print(format_table(table))
    if args.json:
        atomic_write_text(args.json, json.dumps(table, indent=1) + "\n")
    if args.csv:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["supervision", "cell", "MaxBoxAcc", "mIoU", "checkpoint"])
        for s, cells in table.items():
            for cell, v in cells.items():
                if v is not None:
                    writer.writerow([s, cell, f"{v['MaxBoxAcc']:.4f}", f"{v['mIoU']:.4f}", v["checkpoint"]])
        atomic_write_text(args.csv, buf.getvalue())
    return 0


@command("protocol-table", help="model selection and thresholds with GT vs pseudo-boxes (thesis Table 4.2)")
def configure_protocol_table(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, help="finished runs (their epoch checkpoints are compared)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--pseudo-boxes", nargs="*", metavar="NAME=FILE", help="val pseudo-box files, one column each")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--json")
    parser.add_argument("--csv")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_protocol_table)


def _noise_study(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.protocol.noise import NOISE_LEVELS, noisy_split
    from tedloc.protocol.selection import evaluate_checkpoint, list_checkpoints, select

    dataset = load_dataset(args.data, splits=["val", "test"])
    val, test = dataset["val"], dataset["test"]
    sets = {"GT": val, **{f"noise{level}": noisy_split(val, level, args.seed) for level in NOISE_LEVELS}}
    results = {}
    runtime = runtime_from_args(args)
    for run in args.runs:
        for ckpt in list_checkpoints(run):
            results[ckpt] = evaluate_checkpoint(ckpt, sets, test, args.interval, runtime=runtime)
    clean = select(results, "GT")
    rows = []
    print("| val boxes | selected | BV-TT MaxBoxAcc | BV-VT MaxBoxAcc | BV-VT - clean BV-VT |")
    print("|---|---|---|---|---|")
    for name in sets:
        cells = select(results, name)
        rows.append({"boxes": name, **{c: cells[c] for c in ("BV-TT", "BV-VT")}})
        gap = cells["BV-VT"]["MaxBoxAcc"] - clean["BV-VT"]["MaxBoxAcc"]
        print(f"| {name} | {cells['BV-VT']['checkpoint']} | {cells['BV-TT']['MaxBoxAcc']:.2f} | "
              f"{cells['BV-VT']['MaxBoxAcc']:.2f} | {gap:+.2f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


@command("noise-study", help="selection with GT boxes perturbed at 10 noise levels vs clean GT (thesis §4.6.2)")
def configure_noise_study(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_noise_study)


def _sweep(args: argparse.Namespace) -> int:
    from tedloc.protocol.sweep import run_sweep

    inputs = None
    if args.method == "cam":
        from tedloc.training.pretrain import PretrainConfig

        base = PretrainConfig(arch=args.arch, input_size=args.input_size, epochs=args.epochs,
                              batch_size=args.batch_size, workers=args.workers)
    else:
        from tedloc.training.tedloc import TeDLocTrainConfig

        if not (args.anchors and args.cams and args.encoder_run):
            raise TedlocError("--method tedloc needs --anchors, --cams and --encoder-run")
        base = TeDLocTrainConfig(encoder=args.arch, encoder_run=str(Path(args.encoder_run).resolve()),
                                 input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size,
                                 workers=args.workers, decoder_channels=tuple(args.decoder_channels),
                                 feature_cache=args.feature_cache, cache_views=args.cache_views)
        inputs = {"anchors": args.anchors, "cams": args.cams}
    study = run_sweep(args.method, args.data, args.out, args.pseudo_boxes, args.trials, base, args.storage,
                      tuple(args.step_range), args.seed, inputs, args.interval, runtime_from_args(args))
    best = study.best_trial
    print(f"{len(study.trials)} trials; best val MaxBoxAcc vs pseudo-boxes {best.value:.2f} "
          f"({best.user_attrs.get('run')}, epoch {best.user_attrs.get('best_epoch')}): {best.params}")
    return 0


@command("sweep", help="hyper-parameter search scored by val pseudo-boxes, never GT boxes (Optuna, resumable)")
def configure_sweep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=("cam", "tedloc"), required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--pseudo-boxes", required=True, help="val pseudo-box file (tedloc pseudo-boxes)")
    parser.add_argument("--out", required=True, help="folder of the trials' runs (and study.db)")
    parser.add_argument("--trials", type=int, default=20, help="finished trials wanted in the study")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    parser.add_argument("--step-range", type=int, nargs=2, default=[2, 9], metavar=("LOW", "HIGH"))
    parser.add_argument("--arch", default="tedloc_resnet_tiny", help="classifier (cam) or encoder (tedloc)")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--anchors", help="tedloc: anchor file")
    parser.add_argument("--cams", help="tedloc: map cache of the train split")
    parser.add_argument("--encoder-run", help="tedloc: the pretrain run whose backbone is E")
    parser.add_argument("--decoder-channels", type=int, nargs="+", default=[32])
    parser.add_argument("--feature-cache", help="tedloc: shared feature cache folder (recommended)")
    parser.add_argument("--cache-views", type=int, default=2, help="tedloc: training views per image in the cache")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_sweep)
