"""``tedloc data ...``: make, import and check dataset directories."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tedloc.cli.commands import command
from tedloc.cli.output import summarize
from tedloc.data import (
    SyntheticConfig,
    check_dataset,
    convert_tinyimagenet,
    download_tinyimagenet,
    import_wsol,
    load_dataset,
    make_synthetic,
)
from tedloc.data.synthetic import PLACEMENT_CHOICES
from tedloc.data.wsol_import import WSOL_DATASETS
from tedloc.data.youtube_objects import CONVERSION_REPORT, convert_ytov1, convert_ytov2
from tedloc.utils.io import atomic_write_text


def _tinyimagenet(args: argparse.Namespace) -> int:
    out = convert_tinyimagenet(args.src, args.out, val_per_class=args.val_per_class, workers=args.workers,
                               classes=args.classes)
    print(f"wrote {out}\n{summarize(out)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    out = download_tinyimagenet(args.out, val_per_class=args.val_per_class)
    print(f"wrote {out}\n{summarize(out)}")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    cfg = SyntheticConfig(classes=args.classes, train=args.train, val=args.val, test=args.test, size=args.size,
                          seed=args.seed, placement=args.placement)
    out = make_synthetic(args.out, cfg, force=args.force)
    print(f"wrote {out}\n{summarize(out)}")
    return 0


def _box_stats(args: argparse.Namespace) -> int:
    from tedloc.data.box_statistics import box_statistics

    dataset = load_dataset(args.dir, splits=[args.split])
    stats = box_statistics(dataset[args.split])
    print(f"{args.dir} {args.split}: {stats['images']:,} images, {stats['boxes_per_image']:.2f} boxes per image; the "
          "largest box of each image (area: of the image's; dx, dy: centre offset in image widths / heights)")
    shown = ("0.05", "0.25", "0.5", "0.75", "0.95")
    print(f"{'':8}{'mean':>8}{'std':>8}" + "".join(f"{'q' + q:>8}" for q in shown))
    for name in ("area", "dx", "dy", "offset"):
        v = stats[name]
        print(f"{name:8}{v['mean']:8.3f}{v['std']:8.3f}" + "".join(f"{v['quantiles'][q]:8.3f}" for q in shown))
    if args.json:
        atomic_write_text(args.json, json.dumps(stats, indent=1) + "\n")
    return 0


def _synthetic_video(args: argparse.Namespace) -> int:
    from tedloc.data.synthetic_video import SyntheticVideoConfig, make_synthetic_video

    cfg = SyntheticVideoConfig(classes=args.classes, train_videos=args.train_videos, val_videos=args.val_videos,
                               test_videos=args.test_videos, shots=args.shots, min_frames=args.min_frames,
                               max_frames=args.max_frames, annotation=args.annotation, seed=args.seed)
    out = make_synthetic_video(args.out, cfg, force=args.force)
    print(f"wrote {out}\n{summarize(out)}")
    return 0


def _print_conversion(out: Path) -> None:
    report = json.loads((Path(out) / CONVERSION_REPORT).read_text(encoding="utf-8"))
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    print(f"wrote {out} (details in {Path(out) / CONVERSION_REPORT})\n{summarize(out)}")


def _ytov1(args: argparse.Namespace) -> int:
    _print_conversion(convert_ytov1(args.raw, args.out, force=args.force))
    return 0


def _ytov2(args: argparse.Namespace) -> int:
    _print_conversion(convert_ytov2(args.raw, args.out, force=args.force))
    return 0


def _import_wsol(args: argparse.Namespace) -> int:
    out, skipped = import_wsol(args.metadata_root, args.dataset, args.out, images=args.images, masks=args.masks)
    for split, why in skipped.items():
        print(f"skipped split {split}: {why}", file=sys.stderr)
    print(f"wrote {out}\n{summarize(out)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    report = check_dataset(args.dir, images=not args.metadata_only, workers=args.workers)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{report.root}: {report.classes} classes")
        for name, counts in report.splits.items():
            what = "shots " if "shots" in counts else "images"
            print(f"  {name:<5} {counts['images']:>7,} {what}, {counts['boxes']:>7,} boxes, {counts['masks']:>7,} masks")
        for w in report.warnings[:50]:
            print(f"warning: {w}")
        if len(report.warnings) > 50:
            print(f"... and {len(report.warnings) - 50} more warnings (see --json)")
        for p in report.problems:
            print(f"problem: {p}")
        print("ok" if report.ok else f"{len(report.problems)} problems")
    return 0 if report.ok else 1


@command("data", help="make, import and check datasets")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc data`` and its subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    p = sub.add_parser("tinyimagenet", help="convert an extracted Tiny ImageNet into a dataset directory")
    p.add_argument("--src", required=True, help="extracted tiny-imagenet-200 folder (images are referenced)")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--val-per-class", type=int, default=10, help="train images per class held out as val")
    p.add_argument("--workers", type=int, default=4, help="threads reading image headers")
    p.add_argument("--classes", type=int, metavar="N",
                   help="only the first N classes in sorted-wnid order (default all 200): a smaller benchmark")
    p.set_defaults(func=_tinyimagenet)

    p = sub.add_parser("download", help="download a dataset (needs network access) and convert it")
    dl = p.add_subparsers(dest="download_what", metavar="<dataset>", required=True)
    q = dl.add_parser("tinyimagenet", help="the official Tiny ImageNet archive, MD5-checked")
    q.add_argument("--out", required=True, help="dataset directory (the archive goes to OUT/source)")
    q.add_argument("--val-per-class", type=int, default=10, help="train images per class held out as val")
    q.set_defaults(func=_download)

    p = sub.add_parser("synthetic", help="generate the built-in synthetic benchmark")
    d = SyntheticConfig()
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--classes", type=int, default=d.classes, help="number of classes")
    p.add_argument("--train", type=int, default=d.train, help="train images")
    p.add_argument("--val", type=int, default=d.val, help="val images")
    p.add_argument("--test", type=int, default=d.test, help="test images")
    p.add_argument("--size", type=int, default=d.size, help="image side in pixels")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed of the images")
    p.add_argument("--placement", choices=PLACEMENT_CHOICES, default=d.placement,
                   help="object sizes and positions: those of CUB's or ILSVRC's test boxes, or uniform (the original "
                        f"generator) (default {d.placement})")
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    p.set_defaults(func=_synthetic)

    from tedloc.data.synthetic_video import ANNOTATIONS, SyntheticVideoConfig

    p = sub.add_parser("synthetic-video", help="generate the built-in synthetic video benchmark (shots, boxes)")
    v = SyntheticVideoConfig()
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--classes", type=int, default=v.classes, help="number of classes (one per video)")
    p.add_argument("--train-videos", type=int, default=v.train_videos, help="train videos per class (shots: tags only)")
    p.add_argument("--val-videos", type=int, default=v.val_videos, help="val videos per class (annotated frames)")
    p.add_argument("--test-videos", type=int, default=v.test_videos, help="test videos per class (annotated frames)")
    p.add_argument("--shots", type=int, default=v.shots, help="shots per video")
    p.add_argument("--min-frames", type=int, default=v.min_frames, help="fewest frames of a shot")
    p.add_argument("--max-frames", type=int, default=v.max_frames, help="most frames of a shot")
    p.add_argument("--annotation", choices=ANNOTATIONS, default=v.annotation,
                   help="one annotated frame per shot (sparse, YTOv1), every third frame (dense, YTOv2.2) or both, "
                        "alternating by video (mixed)")
    p.add_argument("--seed", type=int, default=v.seed, help="random seed of the frames")
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    p.set_defaults(func=_synthetic_video)

    p = sub.add_parser("ytov1", help="convert raw YouTube-Objects v1.0 into a video dataset directory")
    p.add_argument("--raw", required=True, help="raw YouTube-Objects v1.0 folder (<class>/sets, <class>/data; "
                                                "frames are referenced, not copied)")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty directory")
    p.set_defaults(func=_ytov1)

    p = sub.add_parser("ytov2", help="convert raw YouTube-Objects v2.2 into a video dataset directory")
    p.add_argument("--raw", required=True, help="raw YouTube-Objects v2.2 folder (<class>/, Ranges/, GroundTruth/)")
    p.add_argument("--out", required=True, help="dataset directory to write (frames are symlinked under OUT/frames)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty directory")
    p.set_defaults(func=_ytov2)

    p = sub.add_parser("import-wsol", help="import wsolevaluation metadata (CUB, ILSVRC, OpenImages)")
    p.add_argument("--metadata-root", required=True, help="folder holding <dataset>/<split>/ metadata folders")
    p.add_argument("--dataset", required=True, choices=sorted(WSOL_DATASETS), help="which dataset's metadata")
    p.add_argument("--images", help="image root the ids are relative to (omit for metadata-only)")
    p.add_argument("--masks", help="mask root the mask paths are relative to (OpenImages)")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.set_defaults(func=_import_wsol)

    p = sub.add_parser("box-stats", help="where and how large a split's objects are (area fraction, centre offset)")
    p.add_argument("dir", help="dataset directory (metadata only is enough)")
    p.add_argument("--split", default="test", help="the split (default test)")
    p.add_argument("--json", help="write every quantile as JSON here")
    p.set_defaults(func=_box_stats)

    p = sub.add_parser("check", help="report every problem of a dataset directory")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print one JSON object (classes, splits, problems)")
    p.add_argument("--metadata-only", action="store_true", help="do not decode images and masks")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images")
    p.set_defaults(func=_check)
