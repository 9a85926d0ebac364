"""Command-line options of a registered method: ``--method NAME``, its config's fields, its extra inputs."""
from __future__ import annotations

import argparse

from tedloc.cli import option_value
from tedloc.cli.config_args import add_config_arguments, config_from_args
from tedloc.errors import TedlocError

__all__ = ["add_method_arguments", "method_from_args", "config_of", "inputs_of"]


def add_method_arguments(parser: argparse.ArgumentParser, argv: list[str] | None, default: str = "tedloc",
                         fixed: str | None = None, search_space: bool = False) -> None:
    """``--method`` (choices: the registry; absent when ``fixed``), then the chosen method's config fields
    and its inputs as required ``--name PATH`` options; with ``search_space`` (a sweep), the searched fields
    are left out. The method is read from ``argv`` before parsing, so ``--help`` shows the chosen method's
    options (abbreviated options are refused: ``--meth`` would escape that reading)."""
    from tedloc.methods import get_method, list_methods

    parser.allow_abbrev = False
    name = fixed or option_value(argv, "--method", default)
    names = list_methods()
    if fixed is None:
        parser.add_argument("--method", choices=names, default=default,
                            help=f"the method to train (default {default}); the options below are those of "
                                 f"--method {name if name in names else default}")
    method = get_method(name if name in names else default)
    parser.set_defaults(method_name=method.name)
    skip = tuple(method.search_space) if search_space else ()
    group = parser.add_argument_group(f"{method.name} inputs")
    for input_name, help_text in method.inputs.items():
        group.add_argument("--" + input_name.replace("_", "-"), required=True, help=help_text)
    add_config_arguments(parser.add_argument_group(f"{method.name} hyper-parameters"), method.config, skip,
                         **method.option_help)


def method_from_args(args: argparse.Namespace):
    """The :class:`~tedloc.methods.Method` the options chose."""
    from tedloc.methods import get_method

    chosen = getattr(args, "method", None) or args.method_name
    if chosen != args.method_name:  # options were made for another method than the one chosen
        raise TedlocError(f"--method {chosen}: give it as '--method {chosen}' (its options depend on it)")
    return get_method(chosen)


def config_of(args: argparse.Namespace, **overrides):
    """The chosen method's config from the options (then ``overrides``)."""
    return config_from_args(method_from_args(args).config, args, **overrides)


def inputs_of(args: argparse.Namespace) -> dict:
    """The chosen method's extra inputs from the options."""
    return {name: getattr(args, name) for name in method_from_args(args).inputs}
