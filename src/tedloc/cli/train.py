"""``tedloc train``: train TeD-Loc from image labels, cached pseudo-label maps and text anchors."""
from __future__ import annotations

import argparse

from tedloc.cli import command
from tedloc.cli.config_args import add_config_arguments, config_from_args
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _train(args: argparse.Namespace) -> int:
    from tedloc.engine import Distributed
    from tedloc.training.tedloc import TeDLocTrainConfig, train_tedloc

    cfg = config_from_args(TeDLocTrainConfig, args)
    history = train_tedloc(args.data, args.out, args.anchors, args.cams, cfg, resume=not args.restart,
                           runtime=runtime_from_args(args))
    last = history[-1]
    if Distributed.current().is_main:
        print(f"{args.out}: {len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}, "
              f"MaxBoxAcc {last['val_MaxBoxAcc']:.2f}")
    return 0


@command("train", help="train TeD-Loc (frozen encoder, decoder + patch classifier, text anchors)")
def configure(parser: argparse.ArgumentParser) -> None:
    from tedloc.training.tedloc import TeDLocTrainConfig

    parser.add_argument("--data", required=True)
    parser.add_argument("--anchors", required=True, help="anchor file (tedloc anchors)")
    parser.add_argument("--cams", required=True, help="map cache of the train split (tedloc cams)")
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    add_config_arguments(
        parser, TeDLocTrainConfig,
        encoder={"help": "timm name of the frozen encoder E"},
        encoder_run={"help": "take E's weights from a `tedloc pretrain` run"},
        encoder_weights={"help": "or from a local weight file"},
        pretrained={"help": "or timm's weights (network or cache)"},
        resize_size={"help": "train resize before the random crop (default 256/224 of the input size)"},
        logit={"choices": ("dot", "cosine")},
        lambdas={"metavar": ("KD", "PCL", "ICL"), "help": "loss weights; 0 switches a term off"},
        k={"help": "FG and BG pseudo-labels per image per step"},
        fg_pool={"help": "FG pseudo-labels: drawn from this top share of the CAM region's locations"},
        bg_pool={"help": "BG pseudo-labels: drawn from this bottom share of the locations outside it"},
        lr_step={"help": "decay the LR every N epochs"},
        selection={"choices": ("loc", "cls", "last"),
                   "help": "model selection: best val MaxBoxAcc (GT boxes), best val CL, or the last epoch"},
        feature_cache={"help": "folder for E's features of fixed training views: computed once, then every epoch "
                               "trains the decoder only (shared by runs of the same encoder)"},
        cache_views={"help": "training views per image in the cache"},
        interval={"help": "CAM threshold interval of the validation"},
        workers={"help": "data loader processes"},
        batch_size={"help": "images per process and step (with torchrun, the global batch is N times this)"},
    )
    add_runtime_arguments(parser)
    parser.set_defaults(func=_train)
