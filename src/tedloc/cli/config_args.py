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

__all__ = ["add_config_arguments", "config_from_args", "field_options", "option_type"]


def field_options(config_cls: type, name: str) -> dict:
    """The argparse keywords (``help``, ``choices``, ``metavar``, ``nargs``) in the metadata of field ``name``: its
    own, else those of the nearest base class that declares it (a subclass that only changes a default keeps
    the base's help)."""
    for cls in config_cls.__mro__:
        declared = getattr(cls, "__dataclass_fields__", {}).get(name)
        if declared is not None and declared.metadata:
            return dict(declared.metadata)
    return {}


def option_type(hint: Any) -> tuple[Any, Any]:
    """(element type, nargs) of a field annotation."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return (args[0], "+") if len(args) == 2 and args[1] is Ellipsis else (args[0], len(args))
    return hint, None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of ``config_cls`` (except ``skip``), with the argparse keywords of the field's
    metadata (:func:`field_options`)."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        extra = field_options(config_cls, field.name)
        element, nargs = option_type(hints[field.name])
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
