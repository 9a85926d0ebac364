"""The registry of subcommands: a command module decorates its ``configure(parser)`` with :func:`command`."""
from __future__ import annotations

from typing import Callable

__all__ = ["command", "option_value", "COMMANDS"]

Configure = Callable[..., None]
COMMANDS: dict[str, tuple[str, Configure, bool]] = {}


def command(name: str, help: str, argv: bool = False) -> Callable[[Configure], Configure]:
    """Register ``configure(parser)`` as the subcommand ``name``; it sets ``func`` via ``set_defaults``.
    With ``argv``, it is called as ``configure(parser, argv)`` (the command line after the subcommand, or
    None for ``tedloc --help``), for options that depend on another option (``--method``)."""

    def register(configure: Configure) -> Configure:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} registered twice")
        COMMANDS[name] = (help, configure, argv)
        return configure

    return register


def option_value(argv: list[str] | None, flag: str, default: str | None = None) -> str | None:
    """The value of ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``), else ``default``."""
    for i, arg in enumerate(argv or []):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return default
