"""``--protocol PRESET`` and the options that change one of its settings (``--interval``, ``--map-class``, ...).

The defaults are the preset's (:data:`tedloc.eval.conventions.EVAL_PROTOCOLS`), never written here; the
help of each option is the record's field help.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from tedloc.cli.config_args import option_type
from tedloc.eval.conventions import EVAL_PROTOCOLS, EvalProtocol, eval_protocol

__all__ = ["add_protocol_arguments", "protocol_from_args", "PROTOCOL_FIELDS"]

PROTOCOL_FIELDS = tuple(f.name for f in dataclasses.fields(EvalProtocol))


def add_protocol_arguments(parser: argparse.ArgumentParser, preset: str = "standard",
                           fields: tuple[str, ...] = PROTOCOL_FIELDS, dest_prefix: str = "") -> None:
    """``--protocol`` (default ``preset``) and one option per setting in ``fields`` (``--interval``, ...); with
    ``dest_prefix``, the options are ``--<prefix>-interval`` (a command whose own options have those names)."""
    default = EVAL_PROTOCOLS.get(preset)
    flag_prefix = f"--{dest_prefix.replace('_', '-')}-" if dest_prefix else "--"
    parser.add_argument(f"{flag_prefix}protocol", dest=f"{dest_prefix}_protocol" if dest_prefix else "protocol",
                        choices=EVAL_PROTOCOLS.names(), default=preset,
                        help="the evaluation protocol (tedloc.eval.conventions): " + "; ".join(
                            f"{name}, thresholds every {EVAL_PROTOCOLS.get(name).interval}"
                            for name in EVAL_PROTOCOLS.names()) + " (standard: the papers'); the options below "
                        "change one of its settings")
    hints = typing.get_type_hints(EvalProtocol)
    for f in dataclasses.fields(EvalProtocol):
        if f.name not in fields:
            continue
        value = getattr(default, f.name)
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else ("none" if value is None else value)
        extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        element, nargs = option_type(hints[f.name])
        parser.add_argument(flag_prefix + f.name.replace("_", "-"), dest=f"{dest_prefix}_{f.name}" if dest_prefix
                            else f.name, type=element, nargs=nargs, default=None,
                            help=f"{f.metadata['help']} (default: the protocol's; {preset}: {shown})", **extra)


def protocol_from_args(args: argparse.Namespace, dest_prefix: str = "") -> EvalProtocol:
    """The record the parsed options chose: the preset with the settings given on the command line."""
    key = (lambda name: f"{dest_prefix}_{name}") if dest_prefix else (lambda name: name)
    changes = {name: getattr(args, key(name)) for name in PROTOCOL_FIELDS
               if getattr(args, key(name), None) is not None}
    if "iou_thresholds" in changes:
        changes["iou_thresholds"] = tuple(changes["iou_thresholds"])
    return eval_protocol(getattr(args, key("protocol")), **changes)
