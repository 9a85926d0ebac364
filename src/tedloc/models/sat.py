"""SAT (Wu et al., ICCV 2023): a spatial-aware token for WSOL on a ViT.

A learnable token (with its own position embedding) is appended after the patch tokens. In every block its
row of attention logits, averaged over the heads, through a sigmoid, gives each token a foreground probability
(the block's *spatial gate*); in the last ``gated_blocks`` blocks (the authors: 3 of 12) the gate multiplies the
attention weights column by column. The localization map is the gates of those blocks on the patches, averaged.
Training: the cross-entropy of the semantic maps' logits (TS-CAM's head), the batch area loss
``|mean area of the batch's maps - area threshold|`` and the normalisation loss, the mean of ``m (1 - m)`` over
the map blurred by a 3x3 Gaussian (it pushes every patch to 0 or 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.errors import OptionError
from tedloc.models.vit_wsol import ViTSemanticNetwork

__all__ = ["SATNetwork", "spatial_gate", "gaussian_kernel", "area_of", "normalization_term", "batch_area_loss"]


def gaussian_kernel(size: int = 3, nsig: float = 6.0) -> torch.Tensor:
    """The authors' blur kernel (``size`` x ``size``, summing to 1): the square root of the outer product of a
    normal distribution's masses over ``size`` equal bins of ``[-nsig - d/2, nsig + d/2]``, ``d = (2 nsig + 1) /
    size``."""
    step = (2 * nsig + 1.0) / size
    edges = torch.linspace(-nsig - step / 2.0, nsig + step / 2.0, size + 1, dtype=torch.float64)
    cdf = torch.tensor([0.5 * (1.0 + math.erf(float(e) / math.sqrt(2.0))) for e in edges], dtype=torch.float64)
    masses = cdf.diff()
    kernel = torch.sqrt(torch.outer(masses, masses))
    return (kernel / kernel.sum()).float()


def spatial_gate(logits: torch.Tensor) -> torch.Tensor:
    """The spatial-aware token's gate (B, 1, 1, N) from a block's attention logits (B, heads, N, N): the sigmoid
    of its (last) row averaged over the heads."""
    return torch.sigmoid(logits[:, :, -1, :].mean(dim=1))[:, None, None, :]


def area_of(maps: torch.Tensor) -> torch.Tensor:
    """Each map's mean (B,) of maps (B, 1, h, w)."""
    return maps.flatten(1).mean(dim=1)


def normalization_term(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The normalisation loss of each map (B,): the mean of ``b (1 - b)``, ``b`` the map blurred by ``kernel``
    (zero padding)."""
    k = kernel.to(maps.dtype)
    blurred = F.conv2d(maps, k[None, None], padding=k.shape[-1] // 2)
    return ((1 - blurred) * blurred).flatten(1).mean(dim=1)


def batch_area_loss(areas: torch.Tensor, threshold: float) -> torch.Tensor:
    """The batch area loss: ``|mean of the batch's areas - threshold|``."""
    return (areas.mean() - threshold).abs()


class SATNetwork(ViTSemanticNetwork):
    """SAT: the ViT with the spatial-aware token (``loc_token`` + ``loc_embed``) gating the attention of its last
    ``gated_blocks`` blocks, and TS-CAM's semantic head for the logits. In training ``forward`` gives
    ``(logits, areas, normalisation terms)``, in evaluation the logits; :meth:`localization` gives ``sat`` (the
    token's map) and ``semantic`` (per class)."""

    map_names = ("sat", "semantic")
    class_maps = ("semantic",)

    def __init__(self, vit: nn.Module, num_classes: int, gated_blocks: int = 3):
        super().__init__(vit, num_classes)
        depth = len(vit.blocks)
        if not 1 <= int(gated_blocks) <= depth:
            raise OptionError(f"sat_blocks must be 1-{depth} (the blocks of {type(vit).__name__}), got {gated_blocks}")
        self.gated_blocks = int(gated_blocks)
        self.loc_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        nn.init.trunc_normal_(self.loc_embed, std=0.02)
        nn.init.trunc_normal_(self.loc_token, std=0.02)
        self.register_buffer("blur", gaussian_kernel(), persistent=False)

    def token_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(semantic maps (B, K, h, w), the token's map (B, 1, h, w))``."""
        grid = self.grid(images)
        x = self.embed(images)
        loc = self.vit.pos_drop(self.loc_token + self.loc_embed).expand(x.shape[0], -1, -1)
        first = len(self.vit.blocks) - self.gated_blocks
        gates: list[torch.Tensor] = []

        def keep(logits: torch.Tensor) -> torch.Tensor:
            gates.append(spatial_gate(logits))
            return gates[-1]

        tokens, _ = self.run_blocks(torch.cat([x, loc], dim=1), lambda i: keep if i >= first else None)
        p = self.prefix
        semantic = self.semantic(tokens[:, p:-1], grid)
        maps = torch.stack(gates).mean(dim=0)[:, 0, 0, p:-1]
        return semantic, maps.reshape(maps.shape[0], 1, *grid)

    def forward(self, images: torch.Tensor):
        """Training: ``(logits, each map's area (B,), each map's normalisation term (B,))``; evaluation: the
        logits."""
        semantic, maps = self.token_map(images)
        logits = self.logits_of(semantic)
        if not self.training:
            return logits
        return logits, area_of(maps), normalization_term(maps, self.blur)

    def localization(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, maps)``: ``sat`` (B, 1, h, w) and ``semantic`` (B, K, h, w)."""
        semantic, maps = self.token_map(images)
        return self.logits_of(semantic), {"sat": maps, "semantic": semantic}
