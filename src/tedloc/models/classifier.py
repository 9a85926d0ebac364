"""Classifiers (encoder + global pooling + linear head) by timm name: what ``tedloc pretrain`` trains
and what the CAM baseline and TeD-Loc's offline encoder are made of."""
from __future__ import annotations

import os

import torch

from tedloc.errors import TedlocError
from tedloc.data.preprocessing import Preprocessing
from tedloc.models.preprocessing import preprocessing_of
from tedloc.weights import loading_weights

__all__ = ["build_classifier"]


def build_classifier(arch: str, num_classes: int, pretrained: bool = False, weights: str | None = None,
                     input_size: int | None = None, resize_size: int | None = None,
                     model_kwargs: dict | None = None) -> torch.nn.Module:
    """A timm classifier (tedloc's small CNNs included) with a fresh ``num_classes`` head.

    ``pretrained`` takes timm's weights (network or cache); ``weights``, a local weight file. The model
    carries its :class:`~tedloc.data.preprocessing.Preprocessing` as ``model.preprocessing``, as timm
    models carry ``pretrained_cfg``: the normalisation its weights expect (timm's for ``arch`` when they
    come from timm or a file; ImageNet's for weights trained here from scratch, which ``tedloc pretrain``
    trains under it), ``input_size`` (default timm's) and ``resize_size`` as given. ``model_kwargs``: further
    arguments of ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    import timm

    import tedloc.models.cnn  # noqa: F401  (registers tedloc_resnet_*)
    import tedloc.models.tiny_vit  # noqa: F401  (registers tedloc_vit_tiny)

    kwargs = dict(model_kwargs or {})
    if weights is not None:
        if not os.path.isfile(weights):
            raise TedlocError(f"encoder weights not found: {weights}")
        kwargs["pretrained_cfg_overlay"] = dict(file=os.fspath(weights))
        pretrained = True
    try:
        with loading_weights(f"timm:{arch}", needed=pretrained and weights is None):
            try:  # ViTs are made for the input size (position embeddings resized when loading weights)
                model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes,
                                          **({"img_size": int(input_size)} if input_size else {}), **kwargs)
            except TypeError as e:  # CNNs take any input size and have no img_size argument
                if "img_size" not in str(e):
                    raise
                model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except RuntimeError as e:
        if "nknown model" in str(e):
            raise TedlocError(f"unknown architecture {arch!r}; see timm.list_models()") from None
        raise
    weights_record = preprocessing_of(model, input_size, resize_size)
    model.preprocessing = weights_record if pretrained else Preprocessing(weights_record.input_size, resize_size)
    return model
