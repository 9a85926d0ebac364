"""``tedloc pretrain``: train a classifier from scratch (or from local weights) on a dataset's train split."""
from __future__ import annotations

import argparse

from tedloc.cli import command
from tedloc.cli.config_args import add_config_arguments, config_from_args
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _pretrain(args: argparse.Namespace) -> int:
    from tedloc.engine import Distributed
    from tedloc.training import PretrainConfig, pretrain

    history = pretrain(args.data, args.out, config_from_args(PretrainConfig, args), resume=not args.restart,
                       runtime=runtime_from_args(args))
    last = history[-1]
    if Distributed.current().is_main:
        print(f"{args.out}: {len(history)} epochs, val top-1 {last['val_top1']:.2f}, top-5 {last['val_top5']:.2f}")
    return 0


@command("pretrain", help="train a classifier (encoder + pooling + linear head) on the train split")
def configure(parser: argparse.ArgumentParser) -> None:
    from tedloc.training.pretrain import PretrainConfig

    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    add_config_arguments(
        parser, PretrainConfig,
        arch={"help": "timm name (tedloc_resnet_tiny, resnet18, vit_tiny_patch16_224, ...)"},
        resize_size={"help": "train resize before the random crop (default 256/224 of the input size)"},
        lr_step={"help": "decay the LR every N epochs"},
        workers={"help": "data loader processes"},
        pretrained={"help": "start from timm's weights (network or cache)"},
        encoder_weights={"help": "start from a local weight file (no download)"},
        batch_size={"help": "images per process and step (with torchrun, the global batch is N times this)"},
    )
    add_runtime_arguments(parser)
    parser.set_defaults(func=_pretrain)
