"""DiPS's trainable heads on a frozen ViT (thesis ch. 2, the journal version's ``main_extended.py``).

- :class:`ClassTokenClassifier`: a linear layer on the concatenated, final-norm class tokens of the
  last ``n_blocks`` blocks (DINO's linear evaluation; DiPS: 4 blocks, 4 x 384 -> classes), weights
  drawn from N(0, 0.01), bias 0; trained with cross-entropy, then frozen.
- :class:`LocalizationDecoder`: the final-norm patch tokens of the last block on their grid, then
  four blocks of [nearest x2 upsampling, (3x3 conv, batch norm, ReLU) x 2] halving the channels,
  the last one giving 2 channels (background, foreground) at 16x the grid (224 for a 14x14 grid);
  softmax over the two channels. As in DiPS's code, the last block also ends in batch norm and
  ReLU, so both logits are >= 0 before the softmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.models.encoders import FrozenEncoder
from tedloc.models.vit_attention import (attention_of_input, check_attention, class_token_maps, last_block_input,
                                         patch_grid)

__all__ = ["ClassTokenClassifier", "LocalizationDecoder", "class_tokens", "patch_tokens", "ViTOutputs",
           "vit_outputs", "partial_cross_entropy", "DiPSNet", "decoder_stages"]


@dataclass
class ViTOutputs:
    """What DiPS reads of its frozen ViT in one pass: the class tokens of the last blocks (B, n*D), the last
    block's final-norm patch tokens on their grid (B, D, gh, gw) and, when asked, the class token's attention
    to the patches per head (B, heads, gh, gw)."""

    class_tokens: torch.Tensor
    patch_tokens: torch.Tensor
    attention: torch.Tensor | None = None


@torch.no_grad()
def vit_outputs(model: nn.Module, images: torch.Tensor, n_blocks: int = 4, attention: bool = False) -> ViTOutputs:
    """One forward of the timm ViT ``model`` giving :class:`ViTOutputs` (no gradients: the ViT is frozen)."""
    if attention:
        check_attention(model)
        with last_block_input(model) as captured:
            tokens, last = _class_and_last_tokens(model, images, n_blocks)
        weights = class_token_maps(model, attention_of_input(model, captured["x"]), tuple(images.shape[-2:]))
    else:
        tokens, last = _class_and_last_tokens(model, images, n_blocks)
        weights = None
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    gh, gw = patch_grid(model, tuple(images.shape[-2:]))
    patches = last[:, prefix:]
    return ViTOutputs(tokens, patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], gh, gw), weights)


def _class_and_last_tokens(model: nn.Module, images: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not 1 <= n_blocks <= len(model.blocks):
        raise TedlocError(f"{type(model).__name__}: class tokens of the last {n_blocks} blocks of "
                          f"{len(model.blocks)}")
    x = model.patch_embed(images)
    x = model._pos_embed(x)
    x = model.patch_drop(x) if hasattr(model, "patch_drop") else x
    x = model.norm_pre(x) if hasattr(model, "norm_pre") else x
    outputs = []
    first = len(model.blocks) - n_blocks
    normed = x
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i >= first:
            normed = model.norm(x)
            outputs.append(normed[:, 0])
    return torch.cat(outputs, dim=1), normed


def class_tokens(model: nn.Module, images: torch.Tensor, n_blocks: int = 4) -> torch.Tensor:
    """The class tokens of the last ``n_blocks`` blocks, each through the final norm, concatenated: ``(B, n*D)``."""
    return _class_and_last_tokens(model, images, n_blocks)[0]


def patch_tokens(model: nn.Module, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The final-norm patch tokens of the last block on their grid: ``(B, D, gh, gw)`` (prefix tokens dropped)."""
    tokens = model.forward_features(images)[:, int(getattr(model, "num_prefix_tokens", 1)):]
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class ClassTokenClassifier(nn.Module):
    """A linear classifier on ``n_blocks`` concatenated class tokens of width ``dim``."""

    def __init__(self, dim: int, num_classes: int, n_blocks: int = 4):
        super().__init__()
        self.n_blocks = n_blocks
        self.linear = nn.Linear(dim * n_blocks, num_classes)
        nn.init.normal_(self.linear.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of the concatenated class tokens ``(B, n_blocks * dim)``."""
        return self.linear(tokens)


def _decoder_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def decoder_stages(patch_size: int) -> int:
    """Decoder blocks (each upsamples x2) that bring a ``patch_size`` grid back to pixels: log2 of the patch."""
    stages = int(round(math.log2(patch_size))) if patch_size > 0 else 0
    if stages < 1 or 2 ** stages != patch_size:
        raise TedlocError(f"the DiPS decoder upsamples by powers of 2; a patch of {patch_size} pixels is not one")
    return stages


class LocalizationDecoder(nn.Module):
    """Patch tokens ``(B, dim, gh, gw)`` -> 2-channel logits ``(B, 2, 2^stages gh, 2^stages gw)`` (background,
    foreground); 4 stages (x16) for a 16-pixel patch. Block ``i`` has ``dim / 2^i`` channels; ``in_channels``
    (default ``dim``) is the input's width, when it is not the tokens' (TrCAM-V's attention maps)."""

    def __init__(self, dim: int = 384, stages: int = 4, in_channels: int | None = None):
        super().__init__()
        widths = [in_channels or dim] + [dim // 2 ** i for i in range(1, stages)] + [2]
        self.blocks = nn.Sequential(*[_decoder_block(widths[i], widths[i + 1]) for i in range(stages)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The two logits per pixel (softmax over dim 1: the foreground probability is channel 1)."""
        return self.blocks(tokens)


def partial_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -255
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """DiPS's partial cross-entropy (thesis eq. 2.1) as (sum over labelled pixels, their count): logits
    ``(B, 2, H, W)``, labels ``(B, H, W)`` in {0, 1, ``ignore_index``}; computed in float32."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    return total, (labels != ignore_index).sum()


class DiPSNet(nn.Module):
    """DiPS at inference: a frozen ViT, the class-token classifier f_c and the localization decoder f_l.

    ``forward(images)`` -> ``logits`` (B, K) from f_c, ``seg`` (B, 2, H, W) the decoder's logits at the input
    size (a multiple of the patch), ``fg`` (B, H, W) the foreground probability (the map).
    """

    def __init__(self, encoder: FrozenEncoder, num_classes: int, n_blocks: int = 4,
                 preprocessing: Preprocessing | None = None):
        super().__init__()
        if not encoder.is_vit or getattr(encoder.model, "cls_token", None) is None:
            raise TedlocError(f"DiPS needs a timm ViT with a class token; {encoder.name} is not one")
        depth = len(encoder.model.blocks)
        if not 1 <= n_blocks <= depth:
            raise TedlocError(f"{encoder.name} has {depth} blocks; f_c cannot read the class tokens of {n_blocks}")
        self.encoder = encoder
        self.n_blocks = n_blocks
        dim = encoder.info.channels
        self.classifier = ClassTokenClassifier(dim, num_classes, n_blocks)
        self.decoder = LocalizationDecoder(dim, decoder_stages(encoder.info.stride))
        self.preprocessing = preprocessing or encoder.preprocessing
        size, patch = self.preprocessing.input_size, encoder.info.stride
        if size % patch:
            raise TedlocError(f"DiPS needs an input size that is a multiple of the patch ({patch}); got {size} "
                              f"(the decoder's map would not cover the image)")

    def vit(self, images: torch.Tensor, attention: bool = False) -> ViTOutputs:
        """The frozen ViT's outputs (see :func:`vit_outputs`)."""
        return vit_outputs(self.encoder.model, images, self.n_blocks, attention)

    @torch.no_grad()
    def class_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen ViT's class tokens of the last ``n_blocks`` blocks ``(B, n*D)``, what f_c reads."""
        return class_tokens(self.encoder.model, images, self.n_blocks)

    def segment(self, patch_tokens: torch.Tensor, size: tuple[int, int], decoder: nn.Module | None = None
                ) -> torch.Tensor:
        """The decoder's 2-channel logits, of the images' ``size`` (the grid times the patch)."""
        seg = (decoder or self.decoder)(patch_tokens)
        if tuple(seg.shape[-2:]) != tuple(size):
            raise TedlocError(f"the decoder's {tuple(seg.shape[-2:])} map does not cover {tuple(size)} images")
        return seg

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class logits, segmentation logits and the foreground probability of ``images``."""
        out = self.vit(images)
        seg = self.segment(out.patch_tokens, tuple(images.shape[-2:]))
        return {"logits": self.classifier(out.class_tokens), "seg": seg, "fg": seg.float().softmax(dim=1)[:, 1]}
