"""``tedloc bench tinyimagenet``: the documented recipe behind the Tiny ImageNet results; ``tedloc bench
cub|ilsvrc|openimages``: the papers' pipeline for users with the images and the weights; ``tedloc bench zoo``:
several methods trained and evaluated alike."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tedloc.cli.commands import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _tinyimagenet(args: argparse.Namespace) -> int:
    from tedloc.data import convert_tinyimagenet
    from tedloc.recipes import run_recipe
    from tedloc.recipes.presets import get_preset

    out = Path(args.out)
    start = time.perf_counter()
    data = out / "data"
    if not (data / "dataset.yaml").exists():
        print(f"[0] convert {args.src} -> {data}", flush=True)
        convert_tinyimagenet(args.src, data)
    recipe = get_preset(f"tinyimagenet-{args.preset}")
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime_from_args(args))
    print(f"bench finished in {(time.perf_counter() - start) / 60:.1f} min; {out / 'results.json'}, "
          f"{out / 'report.md'}, {out / 'report.html'}")
    return 0


def _ensure_weights(recipe, benchmark: str) -> None:
    """Every pretrained weight of the recipe here (or fetched now) before any work, else one line naming it."""
    from tedloc.recipes.weights import models_of_recipe
    from tedloc.weights import ensure_weights

    models = models_of_recipe(recipe)
    if models:
        print(f"[weights] {', '.join(models)}", flush=True)
    ensure_weights(models, fetch_args=f"--bench {benchmark}")


def _set_values(items: list[str] | None) -> dict:
    """``--set KEY=VALUE`` items as a dict, each VALUE read as YAML (one line naming a bad item)."""
    import yaml

    from tedloc.errors import TedlocError

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TedlocError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise TedlocError(f"--set {item}: the value is not valid YAML") from None
    return overrides


def _overrides(args: argparse.Namespace) -> dict:
    """``--set KEY=VALUE`` (VALUE read as YAML) and ``--weights random`` as overrides of the paper recipe."""

    from tedloc.recipes.presets import paper_recipe

    overrides = _set_values(args.set)
    if args.weights == "random":  # every network with random weights: the code path, not the numbers
        _, recipe = paper_recipe(args.benchmark, {k: v for k, v in overrides.items()})
        arch, _, _ = (recipe.text_encoder or "").partition("@")
        defaults = {"cam.pretrained": False, "tedloc.pretrained": False, "clip_pretrained": "random",
                    "text_encoder": f"{arch}@random" if arch.startswith("open_clip:") else recipe.text_encoder}
        overrides = {**defaults, **overrides}
    return overrides


def _paper(args: argparse.Namespace) -> int:
    from tedloc.data import import_wsol
    from tedloc.errors import TedlocError
    from tedloc.recipes import run_recipe
    from tedloc.recipes.presets import paper_recipe

    name, recipe = paper_recipe(args.benchmark, _overrides(args))
    _ensure_weights(recipe, args.benchmark)
    out = Path(args.out)
    start = time.perf_counter()
    if bool(args.data) == bool(args.metadata_root):
        raise TedlocError("give either --data (a tedloc dataset directory) or --metadata-root (wsolevaluation "
                          "metadata, imported to OUT/data)")
    data = Path(args.data) if args.data else out / "data"
    if args.metadata_root and not (data / "dataset.yaml").exists():
        print(f"[0] import {args.metadata_root}/{name} -> {data}", flush=True)
        _, skipped = import_wsol(args.metadata_root, name, data, args.images, args.masks)
        for split, why in skipped.items():
            print(f"    {split}: skipped ({why})", flush=True)
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime_from_args(args))
    print(f"bench finished in {(time.perf_counter() - start) / 60:.1f} min; {out / 'results.json'}, "
          f"{out / 'report.md'}, {out / 'report.html'}")
    return 0


def _video(args: argparse.Namespace) -> int:
    from tedloc.data.synthetic_video import make_synthetic_video
    from tedloc.data.youtube_objects import convert_ytov1, convert_ytov2
    from tedloc.recipes.video import run_video_recipe, video_paper_recipe, video_preset

    out = Path(args.out)
    start = time.perf_counter()
    data = out / "data"
    if args.benchmark == "synthetic-video":
        print(f"[0] synthetic video benchmark -> {data}", flush=True)
        make_synthetic_video(data)
        recipe = video_preset("synthetic-video")
    else:
        overrides = _video_overrides(args)
        recipe = video_paper_recipe(args.benchmark, overrides)
        _ensure_weights(recipe, args.benchmark)
        if args.data:
            data = Path(args.data)
        elif not (data / "dataset.yaml").exists():
            print(f"[0] convert {args.raw} -> {data}", flush=True)
            (convert_ytov1 if args.benchmark == "ytov1" else convert_ytov2)(args.raw, data)
    run_video_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime_from_args(args))
    print(f"bench finished in {(time.perf_counter() - start) / 60:.1f} min; {out / 'results.json'}, "
          f"{out / 'report.md'}")
    return 0


def _video_overrides(args: argparse.Namespace) -> dict:
    """``--set`` and ``--weights random`` of the YouTube-Objects recipes."""

    from tedloc.errors import TedlocError

    overrides = _set_values(args.set)
    if not args.raw and not args.data:
        raise TedlocError("give --raw (the raw YouTube-Objects folder, converted to OUT/data) or --data")
    if args.weights == "random":  # every network with random weights: the code path, not the numbers
        overrides = {"classifier.pretrained": False, "trcamv.pretrained": False, "clip_pretrained": "random",
                     **overrides}
    return overrides


def _zoo(args: argparse.Namespace) -> int:
    from tedloc.errors import TedlocError
    from tedloc.recipes.zoo import parse_methods, run_zoo, zoo_paper_recipe, zoo_preset

    out = Path(args.out)
    start = time.perf_counter()
    methods, overrides = parse_methods(args.methods), _set_values(args.set)
    if args.dataset:
        if not args.data:
            raise TedlocError(f"--dataset {args.dataset} needs --data (a tedloc dataset directory)")
        if args.weights == "random":  # every network with random weights: the code path, not the numbers
            overrides = {"pretrained": False, **overrides}
        recipe = zoo_paper_recipe(args.dataset, methods, overrides)
        _ensure_zoo_weights(recipe, args.dataset)
        data = Path(args.data)
    else:
        recipe = zoo_preset(args.preset, methods, overrides)
        data = Path(args.data) if args.data else out / "data"
        if not args.data and not (data / "dataset.yaml").exists():
            if args.preset == "synthetic":
                from tedloc.data import make_synthetic

                print(f"[0] synthetic benchmark -> {data}", flush=True)
                make_synthetic(data)
            else:
                from tedloc.data import convert_tinyimagenet

                if not args.src:
                    raise TedlocError("--preset tinyimagenet needs --src (the extracted tiny-imagenet-200 folder)")
                print(f"[0] convert {args.src} -> {data}", flush=True)
                convert_tinyimagenet(args.src, data)
    run_zoo(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime_from_args(args))
    print(f"bench finished in {(time.perf_counter() - start) / 60:.1f} min; {out / 'results.json'}, "
          f"{out / 'report.md'}")
    return 0


def _ensure_zoo_weights(recipe, dataset: str) -> None:
    """Every pretrained weight of the zoo's configs here (or fetched now) before any work."""
    from tedloc.recipes.weights import models_of_train_config
    from tedloc.weights import ensure_weights

    models = list(dict.fromkeys(m for c in recipe.configs.values() for m in models_of_train_config(c)))
    if models:
        print(f"[weights] {', '.join(models)}", flush=True)
    ensure_weights(models, fetch_args=" ".join(f"--config {dataset}_{m}" for m in recipe.configs))


@command("bench", help="benchmark recipes: Tiny ImageNet (offline), and CUB / ILSVRC / OpenImages (images and "
                       "weights needed)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc bench`` and its subcommands."""
    from tedloc.recipes.presets import PAPER_DATASETS

    sub = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    for dataset in PAPER_DATASETS:
        p = sub.add_parser(dataset, help=f"the papers' pipeline on {dataset}: CAM baseline, CLIP-ES pseudo-labels, "
                                         f"CLIP text anchors, TeD-Loc, evaluation, report "
                                         f"(tedloc/configs/{dataset}_bench.yaml)")
        p.add_argument("--data", help="a tedloc dataset directory (tedloc data import-wsol), or:")
        p.add_argument("--metadata-root", help="wsolevaluation metadata root (<Dataset>/train,val,test), imported "
                                               "to OUT/data with --images (and --masks)")
        p.add_argument("--images", help="image root the metadata's ids are relative to")
        p.add_argument("--masks", help="mask root (OpenImages)")
        p.add_argument("--out", required=True,
                       help="output folder (runs/, cache/, results.json, report.md, report.html)")
        p.add_argument("--weights", choices=("pretrained", "random"), default="pretrained",
                       help="pretrained: timm's and open_clip's weights (network once; default); random: random "
                            "weights everywhere (checks the code path; the numbers mean nothing)")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                       help="override a setting: cam.FIELD, tedloc.FIELD (their configs' fields) or a recipe key "
                            "(clip, clip_pretrained, text_encoder, map_sizes, eval_batch_size, overlays); VALUE is "
                            "YAML, e.g. tedloc.epochs=1 map_sizes={classifier: 64}")
        add_runtime_arguments(p)
        p.set_defaults(func=_paper)
    from tedloc.recipes.video import VIDEO_DATASETS

    for dataset in VIDEO_DATASETS:
        p = sub.add_parser(dataset, help=f"YouTube-Objects {dataset[4:].replace('2', '2.2')}: convert, the CAM-family "
                                         f"classifier, CLIP-ES pseudo-labels, TrCAM-V, CorLoc, report "
                                         f"(tedloc/configs/{dataset}_bench.yaml)")
        p.add_argument("--raw", help="the raw YouTube-Objects folder (converted to OUT/data), or:")
        p.add_argument("--data", help="a converted video dataset directory (tedloc data ytov1|ytov2)")
        p.add_argument("--out", required=True, help="output folder (runs/, cache/, eval/, results.json, report.md)")
        p.add_argument("--weights", choices=("pretrained", "random"), default="pretrained",
                       help="pretrained: timm's, open_clip's and CLIPSeg's weights (network once; default); random: "
                            "random weights everywhere (checks the code path; the numbers mean nothing)")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                       help="override a setting: classifier.FIELD, trcamv.FIELD or a recipe key (pseudo_labels, clip, "
                            "clip_pretrained, eval_batch_size, overlays, protocol); VALUE is YAML")
        add_runtime_arguments(p)
        p.set_defaults(func=_video)
    p = sub.add_parser("synthetic-video", help="the offline video recipe on the synthetic video benchmark: data, "
                                               "classifier, ViT, CAM pseudo-labels, TrCAM-V, CorLoc (about 8 min "
                                               "on 2 CPU cores)")
    p.add_argument("--out", required=True, help="output folder (data/, runs/, results.json, report.md)")
    add_runtime_arguments(p)
    p.set_defaults(func=_video)

    from tedloc.recipes.zoo import ZOO_DATASETS, ZOO_METHODS, ZOO_PRESETS

    p = sub.add_parser("zoo", help="several WSOL methods (CAM, HaS, CutMix, ADL, ACoL, SPG, NL-CCAM, TS-CAM, SCM, SAT) "
                                   "trained and evaluated alike: one comparison table and the protocol table")
    p.add_argument("--out", required=True, help="output folder (data/, runs/<method>/, results.json, protocol.json, "
                                                "report.md)")
    p.add_argument("--methods", metavar="A,B,...", help=f"the methods (default all: {','.join(ZOO_METHODS)})")
    p.add_argument("--preset", choices=ZOO_PRESETS, default="synthetic",
                   help="offline, tiny networks from scratch: synthetic (the benchmark of `tedloc data synthetic`, "
                        "made in OUT/data; a few minutes) or tinyimagenet (--src converted to OUT/data, as `tedloc "
                        "bench tinyimagenet --preset quick`) (default synthetic)")
    p.add_argument("--dataset", choices=ZOO_DATASETS,
                   help="the paper datasets instead of a preset: each method's <dataset>_<method> config "
                        "(ImageNet weights; --data needed)")
    p.add_argument("--data", help="a tedloc dataset directory (default: the preset's, made in OUT/data)")
    p.add_argument("--src", help="--preset tinyimagenet: the extracted tiny-imagenet-200 folder")
    p.add_argument("--weights", choices=("pretrained", "random"), default="pretrained",
                   help="--dataset: timm's weights (default) or random weights (the code path, not the numbers)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                   help="override a field of every method's config that has it (epochs=1), or of one method "
                        "(has.has_drop_rate=0.3); VALUE is YAML")
    add_runtime_arguments(p)
    p.set_defaults(func=_zoo)

    p = sub.add_parser("tinyimagenet", help="convert, pretrain, CAM, TeD-Loc and its ablations, evaluate on test")
    p.add_argument("--src", required=True, help="extracted tiny-imagenet-200 folder")
    p.add_argument("--out", required=True,
                   help="output folder (data/, runs/<method>/, results.json, report.md, report.html)")
    p.add_argument("--preset", choices=("quick", "full"), default="quick",
                   help="quick: about 15 min on 2 CPU cores; full: about 4 hours (with DiPS) (default quick)")
    add_runtime_arguments(p)
    p.set_defaults(func=_tinyimagenet)
