"""Progress bars for long offline loops (tqdm on a terminal, silent otherwise)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.std import tqdm

__all__ = ["progress", "quiet_third_party"]

T = TypeVar("T")


def _enabled() -> bool:
    forced = os.environ.get("TEDLOC_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false", "no")
    return sys.stderr.isatty()


@contextlib.contextmanager
def quiet_third_party(*loggers: str) -> Iterator[None]:
    """Keep the info messages of ``loggers`` and Hugging Face's progress bars (sentence-transformers' "Loading
    weights") out of plain logs: both are silenced unless progress bars are on (a terminal, or
    ``TEDLOC_PROGRESS=1``)."""
    if _enabled():
        yield
        return
    saved = {name: logging.getLogger(name).level for name in loggers}
    hf_logging, bars_were_on = None, False
    try:
        try:
            from transformers.utils import logging as hf_logging

            bars_were_on = hf_logging.is_progress_bar_enabled()
            if bars_were_on:
                hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            hf_logging = None
        for name in loggers:
            logging.getLogger(name).setLevel(logging.WARNING)
        yield
    finally:  # everything as it was, also when nested or after an error
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if hf_logging is not None and bars_were_on:
            hf_logging.enable_progress_bar()


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it",
             enabled: bool = True) -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar when stderr is a terminal (or ``TEDLOC_PROGRESS=1``) and
    ``enabled`` (e.g. on the first of several processes only).

    ``tqdm.std`` on purpose: ``tqdm.auto``'s bar calls ``iter(iterable)`` when it is made, which
    for a DataLoader creates (and drops) a whole iterator, worker processes included.
    """
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not (enabled and _enabled()),
                dynamic_ncols=True, leave=False)
