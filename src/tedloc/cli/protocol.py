"""The realistic protocol on the command line: pseudo-boxes, their scores, the selection table, noise."""
from __future__ import annotations

import argparse
import json

from tedloc.cli.clip_args import add_clip_model_arguments
from tedloc.cli.commands import command, option_value
from tedloc.cli.eval_args import add_protocol_arguments, protocol_from_args
from tedloc.cli.method_args import add_method_arguments, apply_config_file, config_of, inputs_of
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write_text

# options of `tedloc pseudo-boxes` -> the annotator option they set
_ANNOTATOR_OPTIONS = {"fraction": "fraction", "rpn_weights": "weights", "clip": "clip",
                      "clip_pretrained": "clip_pretrained"}


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
    from tedloc.protocol.annotators import ANNOTATORS
    from tedloc.protocol.make_boxes import make_pseudo_boxes

    if not args.method or not (args.out or args.action == "stages"):
        raise TedlocError("pseudo-boxes 'stages' needs --method; making boxes needs --method and --out"
                          if args.action == "stages" or args.method else
                          "pseudo-boxes needs --method and --out (or the 'score' action)")
    takes = ANNOTATORS.get(args.method).options
    options = {option: getattr(args, dest) for dest, option in _ANNOTATOR_OPTIONS.items()
               if option in takes and getattr(args, dest) is not None}
    if options.get("weights") == "random":  # random weights (tests): recorded as null
        options["weights"] = None
    if args.action == "stages":
        from tedloc.protocol.annotator_stages import annotator_stages, format_stages

        result = annotator_stages(args.data, args.split, args.method, args.run, runtime=runtime_from_args(args),
                                  limit=args.limit, **options)
        print(format_stages(result))
        if args.json_out:
            atomic_write_text(args.json_out, json.dumps(result, indent=1) + "\n")
        return 0
    summary = make_pseudo_boxes(args.data, args.split, args.method, args.run, args.out,
                                runtime=runtime_from_args(args), **options)
    score = summary.get("score")
    tail = f"; vs GT: mIoU {score['mIoU']:.2f}, IoU>=0.5 {score['IoU>=50']:.2f} %" if score else ""
    print(f"{args.out}: {summary['images']} boxes ({args.method}){tail}")
    return 0


@command("pseudo-boxes", help="make pseudo-boxes for a split without GT (ss, cam, clip, rpn), or score a box file")
def configure_pseudo_boxes(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc pseudo-boxes``."""
    parser.add_argument("action", nargs="?", choices=("score", "stages"),
                        help="'score': score --boxes against GT; 'stages': the IoU after each stage of --method's "
                             "chain and its pointing-game accuracy, against GT (thesis Table 4.5); none: make boxes")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="val", help="the split to annotate or score (default val)")
    from tedloc.protocol.annotators import ANNOTATORS

    parser.add_argument("--method", choices=ANNOTATORS.names(),
                        help="the annotator, required to make boxes and for 'stages' (no default; 'score' takes "
                             "none): " + "; ".join(f"{n}: {ANNOTATORS.get(n).description}" for n in ANNOTATORS.names()))
    parser.add_argument("--run", help="classifier run (tedloc pretrain): CAM peak and box confidence")
    parser.add_argument("--out", help="box file to write (plus FILE.json with settings and score)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of proposals kept before the pointing game")
    parser.add_argument("--rpn-weights", help="'DEFAULT' (torchvision COCO weights), a local file, or 'random'")
    add_clip_model_arguments(parser, used_by="--method clip")
    parser.add_argument("--boxes", help="box file to score (localization.txt format, one box per image)")
    parser.add_argument("--rescale", type=int, help="score after rescaling boxes to a square of this size")
    parser.add_argument("--json", action="store_true", help="print the score as JSON")
    parser.add_argument("--limit", type=int, help="'stages': the first N images only (default: all)")
    parser.add_argument("--json-out", help="'stages': write the result as JSON here")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_pseudo_boxes)


def _protocol_table(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.protocol.box_files import supervision_sets
    from tedloc.protocol.selection import evaluate_runs, format_table, protocol_table, table_csv

    from tedloc.protocol.selection import runs_by_method

    groups = runs_by_method(args.runs)
    if len(groups) > 1 and args.report:
        raise TedlocError(f"--report draws the runs of one method; these are of {', '.join(groups)}")
    dataset = load_dataset(args.data, splits=["val", "test"])
    sets = supervision_sets(dataset["val"], args.pseudo_boxes)
    if len(groups) > 1:
        return _methods_table(args, groups, sets, dataset["test"])
    results = evaluate_runs(args.runs, sets, dataset["test"], protocol_from_args(args), runtime=runtime_from_args(args))
    table = protocol_table(results, list(sets))
    print(f"{len(results)} checkpoints of {len(args.runs)} runs (configurations); test MaxBoxAcc / mIoU (%)")
    print(format_table(table))
    print("\nTest BoxAcc at IoU 30 / 50 / 70 / MaxBoxAccV2 (%), the same selections (thesis Tables 4.7/4.8):")
    print(format_table(table, detail=True))
    if args.json:
        atomic_write_text(args.json, json.dumps(table, indent=1) + "\n")
    if args.csv:
        atomic_write_text(args.csv, table_csv(table))
    if args.report:
        from tedloc.report import write_protocol_report

        print(f"wrote {write_protocol_report(results, table, args.report)}")
    return 0


def _methods_table(args: argparse.Namespace, groups: dict[str, list[str]], sets: dict, test) -> int:
    """``tedloc protocol-table`` over the runs of several methods: one row per method (its runs are its
    configurations), one column per supervision and cell; ``--json``: method -> table, ``--csv``: with a method
    column."""
    from tedloc.protocol.selection import evaluate_runs, format_methods_table, protocol_table, table_csv

    tables = {}
    for method, runs in groups.items():
        results = evaluate_runs(runs, sets, test, protocol_from_args(args), runtime=runtime_from_args(args))
        tables[method] = protocol_table(results, list(sets))
    print(f"{len(args.runs)} runs of {len(groups)} methods; test MaxBoxAcc / mIoU (%)")
    print(format_methods_table(tables))
    print("\nTest MaxBoxAccV2 / BoxAcc@50 (%), the same selections (thesis Tables 4.7/4.8):")
    print(format_methods_table(tables, detail=True))
    if args.json:
        atomic_write_text(args.json, json.dumps({"methods": tables}, indent=1) + "\n")
    if args.csv:
        lines: list[str] = []
        for method, table in tables.items():
            head, *body = table_csv(table).splitlines()
            lines += ([] if lines else [f"method,{head}"]) + [f"{method},{row}" for row in body]
        atomic_write_text(args.csv, "\n".join(lines) + "\n")
    return 0


@command("protocol-table", help="model selection and thresholds with GT vs pseudo-boxes (thesis Table 4.2); runs of "
                                "several methods: one row per method")
def configure_protocol_table(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc protocol-table``."""
    from tedloc.protocol.selection import CELL_HELP

    parser.description = ("Each run is one configuration; each column (a supervision of the val split) selects "
                          "on two levels, the epoch within each run, then the run. " + CELL_HELP)
    parser.add_argument("--runs", nargs="+", required=True,
                        help="finished runs, one per configuration (their epoch checkpoints are compared); runs of "
                             "several methods: each method's runs are its configurations, one row per method")
    parser.add_argument("--data", required=True, help="dataset directory (val and test splits with GT boxes)")
    parser.add_argument("--pseudo-boxes", nargs="*", metavar="NAME=FILE", help="val pseudo-box files, one column each")
    add_protocol_arguments(parser, "validation", ("interval", "map_class", "map_size"))  # the thesis: --interval 0.001
    parser.add_argument("--json", help="write the table (every cell, its checkpoint and threshold) as JSON here")
    parser.add_argument("--csv", help="write the table as CSV here")
    parser.add_argument("--report", metavar="FILE.html",
                        help="write the tables and the selection curves as one HTML page here")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_protocol_table)


def _noise_study(args: argparse.Namespace) -> int:
    from tedloc.data import load_dataset
    from tedloc.protocol.noise import format_noise_study, noise_study_rows, noise_supervision
    from tedloc.protocol.selection import evaluate_runs

    dataset = load_dataset(args.data, splits=["val", "test"])
    sets = noise_supervision(dataset["val"], args.seed)
    results = evaluate_runs(args.runs, sets, dataset["test"], protocol_from_args(args), runtime=runtime_from_args(args))
    rows = noise_study_rows(results, list(sets))
    print(format_noise_study(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


@command("noise-study", help="selection with GT boxes perturbed at 10 noise levels vs clean GT (thesis §4.6.2)")
def configure_noise_study(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc noise-study``."""
    parser.add_argument("--runs", nargs="+", required=True, help="finished runs (their epoch checkpoints compared)")
    parser.add_argument("--data", required=True, help="dataset directory (val and test splits with GT boxes)")
    add_protocol_arguments(parser, "validation", ("interval", "map_class", "map_size"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the box perturbations")
    parser.add_argument("--json", help="write the rows as JSON here")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_noise_study)


def _sweep(args: argparse.Namespace) -> int:
    from tedloc.protocol.sweep import run_sweep, trial_runs

    runtime = runtime_from_args(args)
    study = run_sweep(args.method, args.data, args.out, args.pseudo_boxes, args.trials, config_of(args),
                      args.storage, tuple(args.step_range) if args.step_range else None, args.sweep_seed,
                      inputs_of(args), protocol_from_args(args, "sweep"), runtime=runtime, sampler=args.sampler)
    best = study.best_trial
    print(f"{len(study.trials)} trials; best val MaxBoxAcc vs pseudo-boxes {best.value:.2f} "
          f"({best.user_attrs.get('run')}, epoch {best.user_attrs.get('best_epoch')}): {best.params}")
    if args.sampler == "random":  # the fixed pool, scored by every criterion (evaluations reused from the trials)
        from tedloc.data import load_dataset
        from tedloc.protocol.box_files import supervision_sets
        from tedloc.protocol.selection import evaluate_runs, format_table, protocol_table

        dataset = load_dataset(args.data, splits=["val", "test"])
        sets = supervision_sets(dataset["val"], [f"pseudo={args.pseudo_boxes}"])
        results = evaluate_runs(trial_runs(study), sets, dataset["test"], protocol_from_args(args, "sweep"),
                                runtime=runtime)
        table = protocol_table(results, list(sets))
        print(format_table(table))
        atomic_write_text(f"{args.out}/table.json", json.dumps(table, indent=1) + "\n")
    return 0


@command("sweep", help="hyper-parameter search scored by val pseudo-boxes, never GT boxes (Optuna, resumable)",
         argv=True)
def configure_sweep(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """The options of ``tedloc sweep`` (with those of the ``--method`` read from ``argv``)."""
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--pseudo-boxes", required=True, help="val pseudo-box file (tedloc pseudo-boxes)")
    parser.add_argument("--out", required=True, help="folder of the trials' runs (and study.db)")
    parser.add_argument("--trials", type=int, default=20, help="finished trials wanted in the study")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    parser.add_argument("--step-range", type=int, nargs=2, metavar=("LOW", "HIGH"),
                        help="range of the LR step size (default: the method's search space, [2, 9])")
    add_protocol_arguments(parser, "validation", ("interval", "map_class", "map_size"), dest_prefix="sweep")
    parser.add_argument("--sweep-seed", type=int, default=0, help="seed of Optuna's sampler (default 0)")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe",
                        help="tpe: Optuna's TPE (default); random: a fixed pool of sampled configurations, trained "
                             "once, then scored by every criterion (the protocol table over the trials, "
                             "OUT/table.json)")
    add_method_arguments(parser, argv, search_space=True)
    add_runtime_arguments(parser)
    from tedloc.methods import get_method

    searched = tuple(get_method(parser.get_default("method_name")).search_space)
    apply_config_file(parser, option_value(argv, "--config"), ignore=searched)
    parser.set_defaults(func=_sweep)
