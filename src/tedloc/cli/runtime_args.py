"""``--device`` and ``--precision``: the same two options on every command that runs a network."""
from __future__ import annotations

import argparse

from tedloc.utils.device import DEVICE_CHOICES

__all__ = ["add_runtime_arguments", "runtime_from_args"]


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` and ``--precision`` (both ``auto`` by default)."""
    parser.add_argument("--device", default="auto",
                        help=f"where networks run: {DEVICE_CHOICES} (default auto: CUDA if available, else CPU)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="autocast precision of forward passes (default auto: bf16 on GPUs that support it, "
                             "fp32 on the CPU); weights and losses stay fp32")


def runtime_from_args(args: argparse.Namespace):
    """The checked :class:`~tedloc.utils.device.Runtime` of the parsed options."""
    from tedloc.utils.device import Runtime

    return Runtime.create(args.device, args.precision)
