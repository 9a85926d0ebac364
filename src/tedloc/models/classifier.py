"""Classifiers (encoder + global pooling + linear head) by timm name: what ``tedloc pretrain`` trains
and what the CAM baseline and TeD-Loc's offline encoder are made of."""
from __future__ import annotations

import os

import torch

from tedloc.errors import TedlocError
from tedloc.models.preprocessing import preprocessing_of

__all__ = ["build_classifier"]


def build_classifier(arch: str, num_classes: int, pretrained: bool = False, weights: str | None = None,
                     input_size: int | None = None, resize_size: int | None = None) -> torch.nn.Module:
    """A timm classifier (tedloc's small CNNs included) with a fresh ``num_classes`` head.

    ``pretrained`` takes timm's weights (network or cache); ``weights``, a local weight file. The model
    carries its :class:`~tedloc.data.preprocessing.Preprocessing` as ``model.preprocessing`` (timm's
    normalisation for ``arch``; ``input_size``, default timm's, and ``resize_size`` as given), as timm
    models carry ``pretrained_cfg``.
    """
    import timm

    import tedloc.models.cnn  # noqa: F401  (registers tedloc_resnet_*)

    kwargs = {}
    if weights is not None:
        if not os.path.isfile(weights):
            raise TedlocError(f"encoder weights not found: {weights}")
        kwargs["pretrained_cfg_overlay"] = dict(file=os.fspath(weights))
        pretrained = True
    try:
        model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except RuntimeError as e:
        if "nknown model" in str(e):
            raise TedlocError(f"unknown architecture {arch!r}; see timm.list_models()") from None
        raise
    model.preprocessing = preprocessing_of(model, input_size, resize_size)
    return model
