"""TrCAM-V's network (thesis app. II §2.1; the public code's ``ViT_Localizer``).

- A frozen ViT (DINO's ViT-S/16 in the paper; any timm ViT with a class token and timm's plain attention).
- The classifier: a linear layer on the concatenated final-norm class tokens of the last ``n_blocks`` blocks
  (DINO's linear probe, :class:`~tedloc.models.dips.ClassTokenClassifier`).
- The localization head reads the last block's attention: every query token's weights over the patch keys,
  ``attn[:, :, :, prefix:]`` of shape (B, heads, T, gh*gw), laid out as ``heads * T`` channels on the patch grid
  (6 x 197 = 1182 channels on 14x14 for ViT-S/16 at 224), then the skip-less decoder of
  :class:`~tedloc.models.dips.LocalizationDecoder` (widths D/2, D/4, ... down to 2 channels, x2 per block), whose
  channel 1's softmax is the foreground map at the input size.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.models.dips import ClassTokenClassifier, LocalizationDecoder, class_tokens, decoder_stages
from tedloc.models.encoders import FrozenEncoder
from tedloc.models.vit_attention import attention_of_input, check_attention, last_block_input, patch_grid

__all__ = ["TrCAMVNet", "TrCAMVHead", "attention_features"]


def attention_features(model: nn.Module, images: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One frozen pass of the ViT ``model``: the class tokens of its last ``n_blocks`` blocks ``(B, n*D)`` and its
    last block's attention over the patch keys as channels on the patch grid ``(B, heads*T, gh, gw)``."""
    with torch.no_grad(), last_block_input(model) as captured:
        tokens = class_tokens(model, images, n_blocks)
        weights = attention_of_input(model, captured["x"])  # (B, heads, T, T), float32
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    gh, gw = patch_grid(model, tuple(images.shape[-2:]))
    keys = weights[..., prefix:]
    b, heads, queries, _ = keys.shape
    maps = keys.reshape(b, heads * queries, gh, gw)
    return tokens, torch.nan_to_num(maps).to(tokens.dtype)


class TrCAMVNet(nn.Module):
    """TrCAM-V at inference: the frozen ViT, the class-token classifier and the attention decoder.

    ``forward(images)`` -> ``logits`` (B, K), ``seg`` (B, 2, H, W) the decoder's logits at the input size (a
    multiple of the patch), ``fg`` (B, H, W) the foreground probability (the map).
    """

    def __init__(self, encoder: FrozenEncoder, num_classes: int, n_blocks: int = 4,
                 preprocessing: Preprocessing | None = None):
        super().__init__()
        if not encoder.is_vit:
            raise TedlocError(f"TrCAM-V needs a timm ViT with a class token; {encoder.name} is not one")
        check_attention(encoder.model)
        depth = len(encoder.model.blocks)
        if not 1 <= n_blocks <= depth:
            raise TedlocError(f"{encoder.name} has {depth} blocks; the classifier cannot read {n_blocks}")
        self.encoder = encoder
        self.n_blocks = n_blocks
        self.preprocessing = preprocessing or encoder.preprocessing
        size, patch = self.preprocessing.input_size, encoder.info.stride
        if size % patch:
            raise TedlocError(f"TrCAM-V needs an input size that is a multiple of the patch ({patch}); got {size}")
        model = encoder.model
        grid = patch_grid(model, (size, size))
        tokens = int(getattr(model, "num_prefix_tokens", 1)) + grid[0] * grid[1]
        self.attention_channels = model.blocks[-1].attn.num_heads * tokens
        dim = encoder.info.channels
        self.head = TrCAMVHead(ClassTokenClassifier(dim, num_classes, n_blocks),
                               LocalizationDecoder(dim, decoder_stages(patch), in_channels=self.attention_channels))

    @property
    def classifier(self) -> ClassTokenClassifier:
        """The class-token classifier."""
        return self.head.classifier

    @property
    def decoder(self) -> LocalizationDecoder:
        """The localization decoder."""
        return self.head.decoder

    @torch.no_grad()
    def class_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen ViT's class tokens of the last ``n_blocks`` blocks ``(B, n*D)``, what the classifier reads."""
        return class_tokens(self.encoder.model, images, self.n_blocks)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen ViT's class tokens and attention channels (see :func:`attention_features`)."""
        tokens, maps = attention_features(self.encoder.model, images, self.n_blocks)
        if maps.shape[1] != self.attention_channels:
            raise TedlocError(f"TrCAM-V was built for {self.attention_channels} attention channels (input size "
                              f"{self.preprocessing.input_size}); these images give {maps.shape[1]}")
        return tokens, maps

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class logits, segmentation logits and the foreground probability of ``images``."""
        tokens, maps = self.features(images)
        logits, seg = self.head(tokens, maps)
        if tuple(seg.shape[-2:]) != tuple(images.shape[-2:]):
            raise TedlocError(f"the decoder's {tuple(seg.shape[-2:])} map does not cover {tuple(images.shape[-2:])} "
                              f"images")
        return {"logits": logits, "seg": seg, "fg": seg.float().softmax(dim=1)[:, 1]}


class TrCAMVHead(nn.Module):
    """What TrCAM-V trains on the frozen ViT: the classifier and the decoder, as one module (the epoch checkpoint;
    one forward, as distributed training wants)."""

    def __init__(self, classifier: ClassTokenClassifier, decoder: LocalizationDecoder):
        super().__init__()
        self.classifier = classifier
        self.decoder = decoder

    def forward(self, tokens: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits of the class tokens and the decoder's 2-channel logits of the attention channels."""
        return self.classifier(tokens), self.decoder(maps)
