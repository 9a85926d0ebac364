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


TINY_CLIP = "tedloc-tiny-clip"  # a tiny open_clip config (8-pixel patches, 3 blocks), registered for speed


def register_tiny_clip(folder: Path) -> str:
    """Register :data:`TINY_CLIP` with open_clip (its config written to ``folder``); returns the name."""
    import json

    import open_clip

    path = folder / f"{TINY_CLIP}.json"
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32,
                                                               "layers": 3, "head_width": 16},
                                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                             "layers": 1}}))
    open_clip.add_model_config(path)
    return TINY_CLIP


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
    # the former object placement, on which the expected values of the tests that share this set were set (on 8
    # test images, objects placed as CUB's make some of them degenerate: a video of one box, constant maps); the
    # default placement has its own tests (test_synthetic_placement.py) and the demo's
    return make_synthetic(out, SyntheticConfig(classes=4, train=24, val=8, test=8, size=48, seed=3, placement="uniform"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a machine
    whose cores are busy, two spinning OpenMP threads make tiny networks tens of times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cam_run_32(synthetic_small, tmp_path_factory) -> Path:
    """A CAM run (tedloc_resnet_tiny) on ``synthetic_small``: 32x32 inputs, one epoch; read-only for its users."""
    import torch

    from runtimes import CPU
    from tedloc.methods import get_method

    out = tmp_path_factory.mktemp("cam_run_32") / "run"
    cam = get_method("cam")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as its users train it: the same weights whichever module asks first
    try:
        cam.train(synthetic_small, out, cam.config(input_size=32, epochs=1, batch_size=8), runtime=CPU)
    finally:
        torch.set_num_threads(threads)
    return out
