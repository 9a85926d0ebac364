"""Command-line options of a registered method: ``--method NAME``, its config's fields, its extra inputs."""
from __future__ import annotations

import argparse

from tedloc.cli.commands import option_value
from tedloc.cli.config_args import add_config_arguments, config_from_args
from tedloc.errors import TedlocError
from tedloc.utils.config_files import config_path, read_config_file

__all__ = ["add_method_arguments", "method_from_args", "config_of", "inputs_of", "apply_config_file"]


def _typed(action: argparse.Action, value, path: str, key: str):
    """``value`` of the YAML file converted as the option's own ``type`` would convert it from text."""
    def one(v):
        if action.type is None or v is None:
            return v
        if isinstance(v, float) and not v.is_integer():  # the CLI reads "1.5": an int option refuses it, not int(1.5)
            try:
                return action.type(str(v))
            except (TypeError, ValueError):
                raise TedlocError(f"{path}: {key}: {v!r} is not a whole number") from None
        try:
            return action.type(v if not isinstance(v, bool) else str(v))
        except (TypeError, ValueError):
            raise TedlocError(f"{path}: {key}: {v!r} is not a valid value") from None

    if action.nargs == 0:  # a flag: store_true, or a --x/--no-x pair
        if not isinstance(value, bool):
            raise TedlocError(f"{path}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(value, list):
        if isinstance(action.nargs, int) and len(value) != action.nargs:
            raise TedlocError(f"{path}: {key}: expected {action.nargs} values, got {len(value)}")
        if action.nargs in (None, "?"):
            raise TedlocError(f"{path}: {key}: expected one value, got a list")
        if action.nargs == "+" and not value:
            raise TedlocError(f"{path}: {key}: expected at least one value")
        return [one(v) for v in value]
    if action.nargs not in (None, "?") and value is not None:
        raise TedlocError(f"{path}: {key}: expected a list, got {value!r}")
    if action.choices is not None and value is not None and one(value) not in action.choices:
        raise TedlocError(f"{path}: {key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return one(value)


def apply_config_file(parser: argparse.ArgumentParser, name: str | None, ignore: tuple[str, ...] = (),
                      fixed: str | None = None) -> None:
    """Make the values of the config file ``name`` the parser's defaults (flags given on the command line
    override them; a required option given there is no longer required); keys in ``ignore`` are skipped (a
    sweep searches them). For a command of one ``fixed`` method (``pretrain``: cam), the file's ``method`` must
    be that one. An unknown key or a bad value is recorded and reported as one line when the command runs
    (``config_error``)."""
    if not name:
        return
    try:
        values = {k: v for k, v in read_config_file(name).items() if k not in ignore}
        path = str(config_path(name))
        if fixed is not None and "method" in values:
            if values["method"] != fixed:
                raise TedlocError(f"{path}: method: {values['method']} is not this command's method ({fixed}); "
                                  f"use tedloc train --config {name}")
            del values["method"]
        actions = {a.dest: a for a in parser._actions}
        unknown = sorted(k for k in values if k not in actions or k in ("help", "config"))
        if unknown:
            raise TedlocError(f"{path}: unknown option(s) {', '.join(unknown)} for this command")
        for key, value in values.items():
            action = actions[key]
            action.default = _typed(action, value, path, key)
            action.required = False
    except TedlocError as e:
        parser.set_defaults(config_error=str(e))


def add_method_arguments(parser: argparse.ArgumentParser, argv: list[str] | None, default: str = "tedloc",
                         fixed: str | None = None, search_space: bool = False) -> None:
    """``--method`` (choices: the registry; absent when ``fixed``), then the chosen method's config fields
    and its inputs as required ``--name PATH`` options; with ``search_space`` (a sweep), the searched fields
    are left out. The method is read from ``argv`` before parsing, so ``--help`` shows the chosen method's
    options (abbreviated options are refused: ``--meth`` would escape that reading)."""
    from tedloc.methods import get_method, list_methods

    parser.allow_abbrev = False
    config_file = option_value(argv, "--config")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="a YAML file of option values (or a shipped config's name, e.g. cub_tedloc): they "
                             "become the defaults, options given here override them; the resolved config is "
                             "saved in the run")
    from_file = {}
    try:
        from_file = read_config_file(config_file) if config_file else {}
    except TedlocError:
        pass  # reported when the command runs (apply_config_file)
    name = fixed or option_value(argv, "--method", from_file.get("method", default))
    names = list_methods("trained")
    if fixed is None:
        parser.add_argument("--method", choices=names, default=default,
                            help=f"the method to train; the options below are those of "
                                 f"--method {name if name in names else default}")
    method = get_method(name if name in names else default)
    parser.set_defaults(method_name=method.name)
    skip = tuple(method.search_space) if search_space else ()
    group = parser.add_argument_group(f"{method.name} inputs")
    for input_name, help_text in method.inputs.items():
        group.add_argument("--" + input_name.replace("_", "-"), required=True, help=help_text)
    add_config_arguments(parser.add_argument_group(f"{method.name} hyper-parameters"), method.config, skip)
    parser.set_defaults(config_file=config_file)


def method_from_args(args: argparse.Namespace):
    """The :class:`~tedloc.methods.Method` the options chose."""
    from tedloc.methods import get_method

    if getattr(args, "config_error", None):
        raise TedlocError(args.config_error)
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
