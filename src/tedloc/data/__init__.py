"""Datasets: the on-disk format, converters, the synthetic benchmark, images and transforms."""
from tedloc.data.check import CheckReport, check_dataset
from tedloc.data.dataset import SPLIT_NAMES, Split, WSOLDataset
from tedloc.data.images import load_image
from tedloc.data.synthetic import SyntheticConfig, make_synthetic
from tedloc.data.tinyimagenet import convert_tinyimagenet, download_tinyimagenet
from tedloc.data.wsol_format import load_dataset, read_split_metadata, save_dataset, write_split_metadata
from tedloc.data.wsol_import import import_wsol

_LAZY = {  # these need torch: imported on first use, so that data and evaluation commands start fast
    "WSOLImageDataset": "tedloc.data.torch_dataset",
    "TrainTransform": "tedloc.data.transforms",
    "EvalTransform": "tedloc.data.transforms",
    "View": "tedloc.data.transforms",
    "Preprocessing": "tedloc.data.preprocessing",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tedloc.data' has no attribute {name!r}")


__all__ = [
    "SPLIT_NAMES", "Split", "WSOLDataset", "load_dataset", "save_dataset", "read_split_metadata",
    "write_split_metadata", "import_wsol", "convert_tinyimagenet", "download_tinyimagenet", "SyntheticConfig",
    "make_synthetic", "check_dataset", "CheckReport", "load_image", "TrainTransform", "EvalTransform", "View",
    "WSOLImageDataset", "Preprocessing",
]
