"""Progress bars for long offline loops (tqdm on a terminal, silent otherwise)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.std import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def _enabled() -> bool:
    forced = os.environ.get("TEDLOC_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false", "no")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it",
             enabled: bool = True) -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar when stderr is a terminal (or ``TEDLOC_PROGRESS=1``) and
    ``enabled`` (e.g. on the first of several processes only).

    ``tqdm.std`` on purpose: ``tqdm.auto``'s bar calls ``iter(iterable)`` when it is made, which
    for a DataLoader creates (and drops) a whole iterator, worker processes included.
    """
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not (enabled and _enabled()),
                dynamic_ncols=True, leave=False)
