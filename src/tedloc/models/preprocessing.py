"""The preprocessing a timm model's weights expect, as tedloc's :class:`~tedloc.data.preprocessing.Preprocessing`."""
from __future__ import annotations

import torch.nn as nn

from tedloc.data.preprocessing import Preprocessing

__all__ = ["preprocessing_of"]


def preprocessing_of(model: nn.Module, input_size: int | None = None, resize_size: int | None = None,
                     interpolation: str = "bilinear") -> Preprocessing:
    """The record of a timm model: mean and std from its pretrained config (what its weights were trained
    with), ``input_size`` (default: the config's), ``resize_size`` and ``interpolation`` as given (the
    WSOL protocol's geometry, see :mod:`tedloc.data.preprocessing`)."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(input_size) if input_size else int(cfg["input_size"][-1])
    return Preprocessing(size, resize_size, tuple(cfg["mean"]), tuple(cfg["std"]), interpolation)
