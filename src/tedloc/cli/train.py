"""``tedloc train --method NAME`` (any registered method; TeD-Loc by default) and ``tedloc pretrain``
(the same as ``--method cam``: the classifier that is the CAM baseline and TeD-Loc's offline encoder)."""
from __future__ import annotations

import argparse

from tedloc.cli.commands import command, option_value
from tedloc.cli.method_args import (add_method_arguments, apply_config_file, config_of, inputs_of,
                                    method_from_args)
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args


def _train(args: argparse.Namespace) -> int:
    from tedloc.recipes.weights import models_of_train_config
    from tedloc.weights import ensure_weights

    method = method_from_args(args)
    config = config_of(args)
    config_file = getattr(args, "config", None)
    ensure_weights(models_of_train_config(config),  # before any work: here, fetched, or one line naming them
                   fetch_args=f"--config {config_file}" if config_file else None)
    runtime = runtime_from_args(args)
    history = method.train(args.data, args.out, config, resume=not args.restart, runtime=runtime,
                           **inputs_of(args))
    if runtime.dist.is_main:
        print(f"{args.out}: {method.summary(history)}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints")


@command("train", help="train a WSOL method (--method: tedloc, cam, ...) from image labels", argv=True)
def configure(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """The options of ``tedloc train`` (with those of the ``--method`` read from ``argv``)."""
    _common(parser)
    add_method_arguments(parser, argv)
    add_runtime_arguments(parser)
    apply_config_file(parser, option_value(argv, "--config"))
    parser.set_defaults(func=_train)


@command("pretrain", help="train a classifier (encoder + pooling + linear head): train --method cam", argv=True)
def configure_pretrain(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """The options of ``tedloc pretrain`` (``tedloc train --method cam``)."""
    _common(parser)
    add_method_arguments(parser, argv, fixed="cam")
    add_runtime_arguments(parser)
    apply_config_file(parser, option_value(argv, "--config"), fixed="cam")
    parser.set_defaults(func=_train)
