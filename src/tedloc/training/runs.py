"""A training run's folder for the life of the training: claimed, locked, its configuration recorded."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from tedloc.engine.distributed import Distributed
from tedloc.engine.run_folder import claim_run_folder
from tedloc.utils.device import Runtime

__all__ = ["open_run"]


@contextlib.contextmanager
def open_run(out: Path, resolved: dict, runtime: Runtime, dist: Distributed) -> Iterator[None]:
    """Claim ``out`` for this run (the first process only; the others wait for it) and record the
    device and precision; a folder of another run is refused before any work, and so is a resume in
    another precision or number of processes (they change results; another device is allowed)."""
    dist.on_main(lambda: claim_run_folder(out, {**resolved, "precision": runtime.precision,
                                                "processes": dist.world_size,
                                                "runtime": {**runtime.describe(), "processes": dist.world_size}}))
    yield
