"""The ``tedloc`` command line: one entry point, thin over the library.

Each subcommand lives in its own module and registers itself with :func:`command`; the
library does the work. Errors of user input (:class:`~tedloc.errors.TedlocError`, and a
``ValueError`` raised by the library on a bad value) are printed as one clear message with
exit status 2, never as a traceback (``--verbose`` logs it).
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading

from tedloc import __version__
from tedloc.cli.commands import COMMANDS, command, option_value
from tedloc.errors import TedlocError

__all__ = ["main", "command", "option_value", "build_parser"]

def _load_commands() -> None:
    """Import the subcommand modules (they register themselves)."""
    # modules register their commands on import
    from tedloc.cli import (anchors, baseline, bench, cams, data, demo, evaluate, predict,  # noqa: F401
                            proposals, protocol, report, train, weights)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the subcommand it names is configured (some configurations
    read defaults from modules that import torch, which costs seconds)."""
    _load_commands()
    wanted = None
    if argv is not None:
        wanted = next((a for a in argv if not a.startswith("-")), "")
    parser = argparse.ArgumentParser(
        prog="tedloc", description="Weakly supervised object localization: data, training, evaluation.")
    parser.add_argument("--version", action="version", version=f"tedloc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (help_text, configure, wants_argv) in COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is None or name == wanted:
            if wants_argv:
                configure(subparser, argv)
            else:
                configure(subparser)
            show_defaults(subparser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default X)`` to every option's help that does not state its default yet (subcommands too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
            continue
        default = action.default
        flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)  # store_true: off
        if (not action.help or action.help == argparse.SUPPRESS or "default" in action.help.lower()
                or default in (None, argparse.SUPPRESS) or flag or not action.option_strings):
            continue
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        action.help = f"{action.help} (default {str(shown).replace('%', '%%')})"


def os_error_message(e: OSError, out: str | None = None) -> str:
    """``<path>: <reason>``; a failed write deep inside a library (full disk) names no file: ``out`` then."""
    path = e.filename
    if path is None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        path = out
    reason = e.strerror or str(e)
    return reason if path is None else f"{path}: {reason}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m tedloc -- evaluate --run RUN`: torchrun hands the `--` on
        argv = argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_handled_elsewhere)
    if not args.verbose:  # one line per HTTP request of a download: --verbose shows them
        logging.getLogger("httpx").setLevel(logging.WARNING)
    bound_network_waits()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    previous = _catch_sigterm()
    try:
        return int(args.func(args) or 0)
    except TedlocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a bad value the library refused, one line (--verbose: the traceback)
        logging.debug("", exc_info=e)
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"error: {type(e).__name__}: {first} (--verbose shows where)", file=sys.stderr)
        return 2
    except OSError as e:  # full or read-only disk, no permission, ...: one line naming the path
        logging.debug("", exc_info=e)  # the traceback, with --verbose
        print(f"error: {os_error_message(e, getattr(args, 'out', None))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _leave_process_group()


class _Terminated(BaseException):
    """SIGTERM arrived: raised in the command so that it unwinds as on Ctrl-C (temporary files removed, locks
    released), then reported in one line with the status 143."""


def _catch_sigterm():
    """Turn SIGTERM into :class:`_Terminated` for the command's duration; returns the handler to restore, or None
    where another handler is set already (a library's, an outer command's) or this is not the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None
    pid = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() != pid:  # a forked worker (data loading, a process pool): end as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise _Terminated

    return signal.signal(signal.SIGTERM, on_sigterm)


NETWORK_TIMEOUT_S = 30  # a connection or a read that waits longer fails (a network that drops packets, not hangs)


def bound_network_waits(seconds: float = NETWORK_TIMEOUT_S) -> None:
    """Bound every network wait of the command, unless the user set them: Hugging Face Hub's metadata and download
    requests (``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``) and any other socket (torchvision's and
    open_clip's downloads), each connection or read at most ``seconds`` (``TEDLOC_NETWORK_TIMEOUT``)."""
    import os
    import socket

    seconds = float(os.environ.get("TEDLOC_NETWORK_TIMEOUT", seconds))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(seconds)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(seconds)))
    if socket.getdefaulttimeout() is None:
        socket.setdefaulttimeout(seconds)


def _not_handled_elsewhere(record: logging.LogRecord) -> bool:
    """The root handler's filter: a record whose logger (or a parent below the root) has its own handler was
    printed there already (Hugging Face Hub's); printing it again doubled every line."""
    logger = logging.getLogger(record.name)
    while logger is not None and logger is not logging.getLogger():
        if logger.handlers:
            return False
        if not logger.propagate:
            break
        logger = logger.parent
    return True


def _leave_process_group() -> None:
    """Under torchrun: leave the process group cleanly (without importing torch where nothing did)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
