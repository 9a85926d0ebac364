"""``tedloc pretrain``: train a classifier from scratch (or from local weights) on a dataset's train split."""
from __future__ import annotations

import argparse

from tedloc.cli import command


def _pretrain(args: argparse.Namespace) -> int:
    from tedloc.engine import PretrainConfig, pretrain

    d = PretrainConfig()
    cfg = PretrainConfig(
        arch=args.arch, input_size=args.input_size, resize_size=args.resize_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=d.momentum, nesterov=d.nesterov,
        weight_decay=args.weight_decay, lr_step=args.lr_step, lr_gamma=args.lr_gamma, seed=args.seed,
        workers=args.workers, pretrained=args.pretrained, encoder_weights=args.encoder_weights)
    history = pretrain(args.data, args.out, cfg, resume=not args.restart)
    last = history[-1]
    print(f"{args.out}: {len(history)} epochs, val top-1 {last['val_top1']:.2f}, top-5 {last['val_top5']:.2f}")
    return 0


@command("pretrain", help="train a classifier (encoder + pooling + linear head) on the train split")
def configure(parser: argparse.ArgumentParser) -> None:
    from tedloc.engine.pretrain import PretrainConfig

    d = PretrainConfig()
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--arch", default=d.arch, help="timm name (tedloc_resnet_tiny, resnet18, vit_tiny_patch16_224, ...)")
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--lr-step", type=int, default=d.lr_step, help="decay the LR every N epochs")
    parser.add_argument("--lr-gamma", type=float, default=d.lr_gamma)
    parser.add_argument("--input-size", type=int, default=d.input_size)
    parser.add_argument("--resize-size", type=int, help="train resize before the random crop (default 256/224 of input)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    parser.add_argument("--pretrained", action="store_true", help="start from timm's weights (network or cache)")
    parser.add_argument("--encoder-weights", help="start from a local weight file (no download)")
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    parser.set_defaults(func=_pretrain)
