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

import torch
import torch.nn as nn

__all__ = ["ClassTokenClassifier", "LocalizationDecoder", "class_tokens", "patch_tokens"]


def class_tokens(model: nn.Module, images: torch.Tensor, n_blocks: int = 4) -> torch.Tensor:
    """The class tokens of the last ``n_blocks`` blocks, each through the final norm, concatenated: ``(B, n*D)``."""
    x = model.patch_embed(images)
    x = model._pos_embed(x)
    x = model.patch_drop(x) if hasattr(model, "patch_drop") else x
    x = model.norm_pre(x) if hasattr(model, "norm_pre") else x
    outputs = []
    first = len(model.blocks) - n_blocks
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i >= first:
            outputs.append(model.norm(x)[:, 0])
    return torch.cat(outputs, dim=1)


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


class LocalizationDecoder(nn.Module):
    """Patch tokens ``(B, dim, gh, gw)`` -> 2-channel logits ``(B, 2, 16 gh, 16 gw)`` (background, foreground)."""

    def __init__(self, dim: int = 384, stages: int = 4):
        super().__init__()
        widths = [dim // 2 ** i for i in range(stages)] + [2]
        self.blocks = nn.Sequential(*[_decoder_block(widths[i], widths[i + 1]) for i in range(stages)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The two logits per pixel (softmax over dim 1: the foreground probability is channel 1)."""
        return self.blocks(tokens)
