"""NL-CCAM's classifier: a timm CNN with non-local blocks after its last feature stages (Yang et al., WACV 2020).

The authors (Yangseung/NL-CCAM, ``model_cub.py``) put a non-local (self-attention) block after stages 2, 3, 4 and
5 of VGG16 (pool5 removed, 14x14 maps at 224): every stage but the first. Here the blocks follow the last
``nonlocal_stages`` entries of the architecture's ``feature_info`` (default: every stage but the first), so any
timm CNN (and tedloc's small ones) takes them; the head stays global average pooling + linear, and the CAM is read
after the last block.

The block: 1x1 query and key convolutions to C/8 channels, a 1x1 value convolution, softmax attention over the
positions, the attended values through a 1x1 convolution and a batch norm whose weight and bias start at zero (the
block starts as the identity), added to the input.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.errors import OptionError
from tedloc.methods.cam_variants import stage_modules
from tedloc.models.classifier import build_classifier

__all__ = ["NonLocalBlock", "stage_modules", "insert_nonlocal_blocks", "build_nlccam_classifier"]


class NonLocalBlock(nn.Module):
    """``x + BN(mix(V A^T))`` with ``A = softmax(Q^T K)`` over the h*w positions; Q, K: 1x1 convolutions to
    ``channels // 8``, V and mix: 1x1 convolutions, BN zero-initialised (the identity at the start)."""

    def __init__(self, channels: int):
        super().__init__()
        if channels < 8:
            raise OptionError(f"a non-local block needs at least 8 channels (its query has channels/8), got {channels}")
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.mix = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention ``(B, N, N)`` of every position (rows) over the positions (columns), N = h * w."""
        q = self.query(x).flatten(2).transpose(1, 2)
        k = self.key(x).flatten(2)
        return torch.softmax(torch.bmm(q, k), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> the same shape."""
        v = self.value(x).flatten(2)
        attended = torch.bmm(v, self.attention(x).transpose(1, 2)).reshape(x.shape)
        return x + self.bn(self.mix(attended))


def insert_nonlocal_blocks(model: nn.Module, count: int | None, arch: str = "") -> list[str]:
    """A :class:`NonLocalBlock` after each of the last ``count`` feature stages of ``model`` (None: every stage but
    the first), in place: a stage that is an ``nn.Sequential`` gets the block appended (its own parameters keep
    their names), another is replaced by ``Sequential(stage, block)``. Returns the stages' paths. A ViT, a network
    without ``feature_info`` or a ``count`` out of range is an :class:`OptionError`."""
    arch = arch or type(model).__name__
    stages = stage_modules(model)
    if hasattr(model, "num_prefix_tokens") or not stages:
        raise OptionError(f"arch: nlccam needs a CNN with feature stages (timm feature_info) whose features are "
                          f"(B, C, h, w) maps; {arch} has none (a ViT?)")
    if count is None:
        count = len(stages) - 1
    if not 0 <= count <= len(stages):
        raise OptionError(f"nonlocal_stages must be in 0..{len(stages)} for {arch} (its stages: "
                          f"{', '.join(name for name, _ in stages)}), got {count}")
    chosen = stages[len(stages) - count:]
    for name, channels in chosen:
        stage = model.get_submodule(name)
        block = NonLocalBlock(channels)
        if isinstance(stage, nn.Sequential):
            stage.append(block)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.Sequential(stage, block))
    return [name for name, _ in chosen]


def build_nlccam_classifier(config, num_classes: int, pretrained: bool = False) -> nn.Module:
    """The timm classifier of ``config.arch`` (timm's or a file's weights with ``pretrained``: the config's
    ``pretrained`` / ``encoder_weights``; else random) with non-local blocks after its last ``config.nonlocal_stages``
    stages, the combination settings of its CCAM as ``model.ccam`` (``(combination, positive_fraction)``)."""
    model = build_classifier(config.arch, num_classes, pretrained and config.pretrained,
                             config.encoder_weights if pretrained else None, config.input_size, config.resize_size)
    if not isinstance(getattr(model, "get_classifier", lambda: None)(), nn.Linear):
        raise OptionError(f"arch: nlccam needs a classifier whose head is global pooling + nn.Linear; {config.arch} "
                          f"has another head")
    model.nonlocal_stages = insert_nonlocal_blocks(model, config.nonlocal_stages, config.arch)
    model.ccam = (config.combination, config.positive_fraction)
    return model
