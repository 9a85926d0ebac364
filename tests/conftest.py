"""Shared fixtures: the read-only data beside the checkout, small generated datasets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TEDLOC_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$TEDLOC_SHARED_DATA``)."""
    env = os.environ.get("TEDLOC_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def require(path: Path) -> Path:
    """Skip when the shared data is absent, except in CI, where its absence is a failure."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing in CI (set TEDLOC_SHARED_DATA)")
        pytest.skip(f"{path} is not available on this machine")
    return path


@pytest.fixture(scope="session")
def wsol_metadata() -> Path:
    return require(shared_data() / "wsolevaluation" / "metadata")


@pytest.fixture(scope="session")
def tiny_imagenet_src() -> Path:
    return require(shared_data() / "tiny-imagenet-200")


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    from tedloc.data import SyntheticConfig, make_synthetic

    out = tmp_path_factory.mktemp("synthetic") / "data"
    return make_synthetic(out, SyntheticConfig(classes=4, train=24, val=8, test=8, size=48, seed=3))
