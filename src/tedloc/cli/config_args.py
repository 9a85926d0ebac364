"""Command-line options from a config dataclass, and the config back from the parsed options.

Every field becomes ``--field-name`` with the dataclass default, typed from its annotation
(``int``, ``float``, ``str``, ``X | None``, ``bool`` as a ``--flag/--no-flag`` pair, tuples as
``nargs``), so a new hyper-parameter reaches the command line by being added to the config.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["add_config_arguments", "config_from_args", "FIELD_HELP"]

# the help of fields many configs share (a method's own ``option_help`` wins)
FIELD_HELP = {
    "epochs": "training epochs",
    "batch_size": "images per process and step",
    "lr": "learning rate",
    "lr_step": "multiply the learning rate by lr-gamma every N epochs",
    "lr_gamma": "the learning rate's step decay factor",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "weight decay",
    "seed": "random seed (shuffling, augmentation, pseudo-label draws)",
    "workers": "data loader processes",
    "input_size": "side of the square input view in pixels",
    "resize_size": "train resize before the random crop",
    "interval": "threshold interval of the per-epoch validation",
    "decoder_channels": "channels of each x2 upsampling stage of the decoder",
    "logit": "class logits: dot product with the anchors, or cosine (times logit-scale)",
    "logit_scale": "factor of the cosine logits",
    "sigma_rgb": "the CRF loss's colour bandwidth (0-255 units)",
    "sigma_xy": "the CRF loss's spatial bandwidth in pixels",
    "classifier_lr_step": "the class-token classifier stage's LR step (x0.1 every N epochs)",
}


def _option_type(hint: Any) -> tuple[Any, Any]:
    """(element type, nargs) of a field annotation."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return (args[0], "+") if len(args) == 2 and args[1] is Ellipsis else (args[0], len(args))
    return hint, None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = (),
                         **options: dict) -> None:
    """Add one option per field of ``config_cls`` (except ``skip``); ``options[name]`` adds argparse
    keywords for that field (``help``, ``choices``, ``metavar``, ``nargs``)."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        extra = dict(options.get(field.name, {}))
        if "help" not in extra and field.name in FIELD_HELP:
            extra["help"] = FIELD_HELP[field.name]
        element, nargs = _option_type(hints[field.name])
        nargs = extra.pop("nargs", nargs)
        if element is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, **extra)
            continue
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        parser.add_argument(flag, type=element, nargs=nargs, default=default, **extra)


def config_from_args(config_cls: type, args: argparse.Namespace, **overrides: Any):
    """The config with every field taken from ``args`` (tuples restored), then ``overrides``."""
    values = {}
    for field in dataclasses.fields(config_cls):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    values.update(overrides)
    return config_cls(**values)
