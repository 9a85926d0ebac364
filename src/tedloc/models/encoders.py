"""Any timm model as a frozen encoder of patch embeddings: ``(B, 3, H, W) -> (B, C, h, w)``.

- ViT-like models (ViT, DeiT, DINO, EVA-02, ...): the final-norm tokens of ``forward_features``
  without the prefix tokens (class, distillation, registers: ``num_prefix_tokens``), laid out on
  the patch grid, which is derived from the input size (never hard-coded).
- CNNs: the last feature map of ``forward_features`` (a grid of patch embeddings too).

Weights: ``pretrained=True`` loads timm's weights for the name (``arch.tag``) when the machine
has network access or a warm cache; ``weights=PATH`` loads a local file (``.safetensors``,
``.pth``/``.bin``; timm adapts position embeddings and drops a mismatched head) and never
touches the network; neither gives random weights of the same architecture (what the offline
tests use). Preprocessing comes with the model (``encoder.preprocessing``): mean and std from timm's
config for the name, the input size as created.

Frozen means: ``requires_grad=False`` for every parameter, and the encoder stays in eval mode
even when a parent module calls ``.train()`` (norm layers keep their statistics).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import timm
import torch
import torch.nn as nn

import tedloc.models.cnn  # noqa: F401  (registers tedloc's small CNNs with timm)
import tedloc.models.tiny_vit  # noqa: F401  (registers tedloc_vit_tiny)
from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.models.preprocessing import preprocessing_of
from tedloc.weights import loading_weights

__all__ = ["FrozenEncoder", "create_encoder", "EncoderInfo"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderInfo:
    """What a decoder needs to know of an encoder: its name, channels, stride and family."""

    name: str
    channels: int
    stride: int
    is_vit: bool


class FrozenEncoder(nn.Module):
    """A frozen timm backbone returning NCHW patch embeddings (see the module docstring)."""

    def __init__(self, model: nn.Module, name: str, preprocessing: Preprocessing | None = None):
        super().__init__()
        self.model = model
        self.name = name
        self.is_vit = hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")
        self.preprocessing = preprocessing or preprocessing_of(model)
        if self.is_vit:
            patch = model.patch_embed.patch_size
            stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        else:
            info = getattr(model, "feature_info", None)
            stride = int(info[-1]["reduction"]) if info else 32
        self.info = EncoderInfo(name, int(model.num_features), stride, self.is_vit)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "FrozenEncoder":
        """Stay in eval mode: a frozen encoder's norm layers must not update their statistics."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> patch embeddings (B, C, h, w), ViT tokens laid out on the patch grid (no grad)."""
        feats = self.model.forward_features(x)
        if not self.is_vit:
            if feats.ndim != 4:
                raise TedlocError(f"encoder {self.name}: expected a (B, C, h, w) feature map, got {tuple(feats.shape)}")
            return feats
        tokens = feats[:, self.model.num_prefix_tokens:]
        h, w = self.grid_size(x.shape[-2:])
        if tokens.shape[1] != h * w:
            raise TedlocError(f"encoder {self.name}: {tokens.shape[1]} patch tokens do not fill a {h}x{w} grid")
        return tokens.transpose(1, 2).reshape(x.shape[0], tokens.shape[2], h, w)

    def grid_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The (h, w) grid of embeddings for an input of ``image_size`` (H, W)."""
        pe = getattr(self.model, "patch_embed", None)
        if pe is not None and hasattr(pe, "dynamic_feat_size"):
            h, w = pe.dynamic_feat_size(tuple(int(s) for s in image_size))
            return int(h), int(w)
        s = self.info.stride
        return -(-int(image_size[0]) // s), -(-int(image_size[1]) // s)


def create_encoder(
    name: str,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    img_size: int | None = None,
    **kwargs,
) -> FrozenEncoder:
    """A :class:`FrozenEncoder` for the timm model ``name``.

    Args:
        name: timm name, optionally with a weight tag (``eva02_large_patch14_224.mim_m38m``).
        pretrained: load timm's weights for ``name`` (network or cache). Ignored when ``weights`` is set.
        weights: a local weight file; nothing is downloaded.
        img_size: input size for ViTs (position embeddings are resized when loading).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if weights is not None:
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise TedlocError(f"encoder weights not found: {weights}")
        _logger.info("encoder %s: loading local weights %s (no download)", name, weights)
        kwargs["pretrained_cfg_overlay"] = dict(file=weights)
        pretrained = True
    try:
        with loading_weights(f"timm:{name}", needed=pretrained and weights is None):
            try:
                model = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                          **({"img_size": img_size} if img_size else {}), **kwargs)
            except TypeError as e:  # CNNs take any input size and have no img_size argument
                if "img_size" not in str(e):
                    raise
                model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "unknown model" in str(e).lower():
            raise TedlocError(f"unknown encoder {name!r}; see timm.list_models() (tedloc adds "
                              f"tedloc_resnet_tiny, tedloc_resnet_small)") from None
        raise
    return FrozenEncoder(model, name, preprocessing_of(model, img_size))
