"""TS-CAM (Gao et al., ICCV 2021): token semantic coupled attention maps on a ViT.

The patch tokens go through a 3x3 convolution whose channels are the classes' semantic maps; their spatial
mean are the logits, trained with the cross-entropy (the class token is not in the loss, as in the authors'
code). At inference the class-agnostic attention map (the class token's attention to the patches, averaged
over the heads and summed over the blocks) multiplies each class's semantic map: the coupled map of the
class is the localization map.
"""
from __future__ import annotations

import torch

from tedloc.models.vit_wsol import ViTSemanticNetwork, coupled_maps

__all__ = ["TSCAMNetwork"]


class TSCAMNetwork(ViTSemanticNetwork):
    """TS-CAM: ``forward`` gives the logits; :meth:`localization` the maps ``tscam`` (attention x semantic, per
    class), ``attention`` (class-agnostic) and ``semantic`` (per class)."""

    map_names = ("tscam", "attention", "semantic")
    class_maps = ("tscam", "semantic")

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """``(semantic maps (B, K, h, w), every block's attention weights, the patch grid)``."""
        grid = self.grid(images)
        tokens, weights = self.run_blocks(self.embed(images))
        return self.semantic(tokens[:, self.prefix:], grid), weights, grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits: the semantic maps' spatial means."""
        return self.logits_of(self.features(images)[0])

    def attention_map(self, weights: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """The class-agnostic map (B, 1, h, w) the semantic maps are coupled with."""
        return self.class_attention(weights, grid)

    def localization(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, maps)``: the coupled maps (B, K, h, w) under the method's name, the attention map
        (B, 1, h, w) and the semantic maps (B, K, h, w)."""
        semantic, weights, grid = self.features(images)
        attention = self.attention_map(weights, grid)
        return self.logits_of(semantic), {self.map_names[0]: coupled_maps(attention, semantic),
                                          "attention": attention, "semantic": semantic}
