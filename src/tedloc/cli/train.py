"""``tedloc train``: train TeD-Loc from image labels, cached pseudo-label maps and text anchors."""
from __future__ import annotations

import argparse

from tedloc.cli import command


def _train(args: argparse.Namespace) -> int:
    from tedloc.engine.tedloc_train import TeDLocTrainConfig, train_tedloc

    cfg = TeDLocTrainConfig(
        encoder=args.encoder, encoder_run=args.encoder_run, encoder_weights=args.encoder_weights,
        pretrained=args.pretrained, input_size=args.input_size, decoder_channels=tuple(args.decoder_channels),
        logit=args.logit, logit_scale=args.logit_scale, lambdas=tuple(args.lambdas), k=args.k, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, lr_step=args.lr_step,
        selection=args.selection, seed=args.seed, workers=args.workers, feature_cache=args.feature_cache,
        cache_views=args.cache_views)
    history = train_tedloc(args.data, args.out, args.anchors, args.cams, cfg, resume=not args.restart)
    last = history[-1]
    print(f"{args.out}: {len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}, MaxBoxAcc {last['val_MaxBoxAcc']:.2f}")
    return 0


@command("train", help="train TeD-Loc (frozen encoder, decoder + patch classifier, text anchors)")
def configure(parser: argparse.ArgumentParser) -> None:
    from tedloc.engine.tedloc_train import TeDLocTrainConfig

    d = TeDLocTrainConfig()
    parser.add_argument("--data", required=True)
    parser.add_argument("--anchors", required=True, help="anchor file (tedloc anchors)")
    parser.add_argument("--cams", required=True, help="map cache of the train split (tedloc cams)")
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--encoder", default=d.encoder, help="timm name of the frozen encoder E")
    parser.add_argument("--encoder-run", help="take E's weights from a `tedloc pretrain` run")
    parser.add_argument("--encoder-weights", help="or from a local weight file")
    parser.add_argument("--pretrained", action="store_true", help="or timm's weights (network or cache)")
    parser.add_argument("--input-size", type=int, default=d.input_size)
    parser.add_argument("--decoder-channels", type=int, nargs="+", default=list(d.decoder_channels))
    parser.add_argument("--logit", choices=("dot", "cosine"), default=d.logit)
    parser.add_argument("--logit-scale", type=float, default=d.logit_scale)
    parser.add_argument("--lambdas", type=float, nargs=3, default=list(d.lambdas), metavar=("KD", "PCL", "ICL"),
                        help="loss weights; 0 switches a term off")
    parser.add_argument("--k", type=int, default=d.k, help="FG and BG pseudo-labels per image per step")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--lr-step", type=int, default=d.lr_step)
    parser.add_argument("--selection", choices=("loc", "cls", "last"), default=d.selection,
                        help="model selection: best val MaxBoxAcc (GT boxes), best val CL, or the last epoch")
    parser.add_argument("--feature-cache", help="folder for E's features of fixed training views: computed once, "
                        "then every epoch trains the decoder only (shared by runs of the same encoder)")
    parser.add_argument("--cache-views", type=int, default=d.cache_views, help="training views per image in the cache")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    parser.set_defaults(func=_train)
