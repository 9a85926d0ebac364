"""``tedloc proposals``: DiPS's scored proposals of a split (the input of ``tedloc train --method dips``)."""
from __future__ import annotations

import argparse
import json

from tedloc.cli.commands import command, option_value
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.errors import TedlocError

# the keys of a DiPS training config that are this command's options (top_k: the K kept)
CONFIG_KEYS = {"encoder": "encoder", "encoder_run": "encoder_run", "encoder_weights": "encoder_weights",
               "pretrained": "pretrained", "input_size": "input_size", "heads": "heads", "min_size": "min_size",
               "top_k": "k"}


def _proposals(args: argparse.Namespace) -> int:
    from tedloc.methods.dips import make_proposals

    if getattr(args, "config_error", None):
        raise TedlocError(args.config_error)
    cache, quality = make_proposals(
        args.data, args.split, args.out, args.classifier_run, args.encoder, args.input_size,
        encoder_run=args.encoder_run, encoder_weights=args.encoder_weights, pretrained=args.pretrained,
        heads=tuple(args.heads), min_size=args.min_size, k=args.k, blur_sigma=args.blur_sigma,
        batch_size=args.batch_size, runtime=runtime_from_args(args))
    if args.json:
        print(json.dumps({"images": len(cache.image_ids), "k": cache.k, "quality": quality}))
        return 0
    line = f"{args.out}: the top {cache.k} proposals of {len(cache.image_ids)} {args.split} images"
    if quality:
        line += (f"; vs GT: mIoU of the best {quality['mIoU best']:.2f} (IoU>=0.5 {quality['best IoU>=50']:.2f} %), "
                 f"of the top-scored {quality['mIoU top-1']:.2f} (IoU>=0.5 {quality['top-1 IoU>=50']:.2f} %)")
    print(line)
    return 0


def _config_defaults(parser: argparse.ArgumentParser, name: str | None) -> None:
    """The ViT, map set, minimum size and K (its ``top_k``) of the DiPS training config ``name`` as defaults;
    its other keys are the training's. A bad file is reported when the command runs."""
    from tedloc.cli.method_args import _typed
    from tedloc.utils.config_files import config_path, read_config_file

    if not name:
        return
    try:
        values = read_config_file(name)
        if values.get("method", "dips") != "dips":
            raise TedlocError(f"config {name}: a config of --method {values['method']}, not of DiPS")
        actions = {a.dest: a for a in parser._actions}
        path = str(config_path(name))
        parser.set_defaults(**{dest: _typed(actions[dest], values[key], path, key)
                               for key, dest in CONFIG_KEYS.items() if values.get(key) is not None})
    except TedlocError as e:
        parser.set_defaults(config_error=str(e))


@command("proposals", help="DiPS proposals of a split: attention of a frozen ViT, scored by a classifier run",
         argv=True)
def configure_proposals(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """The options of ``tedloc proposals``."""
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="a DiPS training config (or a shipped one's name, e.g. cub_dips): its encoder, "
                             "weights, input size, heads, min_size and top_k (as --k) become the defaults")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--split", default="train", help="the split whose proposals are made")
    parser.add_argument("--out", required=True, help="proposal cache folder (resumed if it exists)")
    parser.add_argument("--classifier-run", required=True,
                        help="the scoring classifier f_r: a `tedloc pretrain` run (the thesis: a ResNet-50)")
    parser.add_argument("--encoder", default="tedloc_vit_tiny",
                        help="timm name of the ViT whose attention gives the proposals (the thesis: "
                             "vit_small_patch16_224.dino); the same as the DiPS run's")
    parser.add_argument("--encoder-run", help="the ViT's weights from a `tedloc pretrain` run")
    parser.add_argument("--encoder-weights", help="or from a local weight file")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                        help="or timm's weights (network or cache)")
    parser.add_argument("--input-size", type=int, default=64, help="the ViT's input (the eval view)")
    parser.add_argument("--heads", type=int, nargs="*", default=[0, 1, 2, 3],
                        help="attention heads of the map set, besides their mean (none: the mean only)")
    parser.add_argument("--min-size", type=float, default=0.05,
                        help="keep boxes larger than this share of the image (else the largest)")
    parser.add_argument("--k", type=int, default=5, help="proposals kept per image (the best scored)")
    parser.add_argument("--blur-sigma", type=float,
                        help="the Gaussian blur outside a box when scoring (default: 1/8 of the longer side)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--json", action="store_true", help="print the counts and quality as JSON")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_proposals)
    _config_defaults(parser, option_value(argv, "--config"))
