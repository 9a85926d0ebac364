"""Dense CLIP class maps without gradients: vanilla CLIP, SCLIP and NACLIP, by name.

All three run the image tower unchanged up to its last block, then a last block of their own, read
every token out through ``ln_post`` and the projection, and score each patch token by its cosine
with the class's text embedding (the 80 OpenAI ImageNet templates, averaged): the class map.

- ``clip``: the last block as trained (attention, MLP, residuals): the vanilla baseline.
- ``sclip`` (Wang et al., ECCV 2024, correlative self-attention): the last block's attention is
  ``softmax(q q^T / sqrt(d)) + softmax(k k^T / sqrt(d))`` per head (a sum), residual and MLP kept,
  as the authors' code does.
- ``naclip`` (Hajimiri et al., WACV 2025): attention ``softmax(k k^T / sqrt(d) + G)`` with ``G`` a
  Gaussian of the patch-grid distance (sigma 5 patches, 1 on the diagonal, 0 for the class
  token), and the last block reduced to its attention: no residual, no MLP.

Left out, as segmentation extras of those papers: sliding windows, PAMR, the class softmax with a
temperature and the background thresholds (see docs/CLIP.md).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.models.clip_vit import ClipTower
from tedloc.utils.registry import Registry

__all__ = ["LAST_BLOCKS", "dense_class_maps", "neighbourhood_bias", "multihead_qkv"]

LastBlock = Callable[[ClipTower, nn.Module, torch.Tensor, tuple[int, int]], torch.Tensor]
LAST_BLOCKS: Registry[LastBlock] = Registry("dense CLIP variant")
NACLIP_SIGMA = 5.0


def multihead_qkv(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v ``(B, heads, T, d)`` of ``attn``'s input projection applied to ``x`` ``(B, T, D)``."""
    b, t, dim = x.shape
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    heads = attn.num_heads

    def split(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(b, t, heads, dim // heads).transpose(1, 2)

    return split(q), split(k), split(v)


def _attend(attn: nn.MultiheadAttention, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, heads, t, d = v.shape
    out = (weights @ v).transpose(1, 2).reshape(b, t, heads * d)
    return attn.out_proj(out)


def neighbourhood_bias(grid: tuple[int, int], sigma: float = NACLIP_SIGMA, device=None) -> torch.Tensor:
    """NACLIP's additive attention bias ``(1 + n, 1 + n)``: ``exp(-|p - p'|^2 / (2 sigma^2))`` between patches
    (grid units), 0 in the class token's row and column."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()
    gauss = torch.exp(-torch.cdist(pts, pts).pow(2) / (2 * sigma ** 2))
    return F.pad(gauss, (1, 0, 1, 0))


@LAST_BLOCKS.register("clip")
def _vanilla(tower: ClipTower, block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return tower.block(tower.num_blocks - 1, x)[0]


@LAST_BLOCKS.register("sclip")
def _sclip(tower: ClipTower, block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    q, k, v = multihead_qkv(block.attn, block.ln_1(x))
    scale = q.shape[-1] ** -0.5
    weights = (q @ q.transpose(-1, -2) * scale).softmax(dim=-1) + (k @ k.transpose(-1, -2) * scale).softmax(dim=-1)
    x = x + block.ls_1(_attend(block.attn, weights, v))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


@LAST_BLOCKS.register("naclip")
def _naclip(tower: ClipTower, block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    _q, k, v = multihead_qkv(block.attn, block.ln_1(x))
    scale = k.shape[-1] ** -0.5
    bias = neighbourhood_bias(grid, device=x.device).to(k.dtype)
    weights = (k @ k.transpose(-1, -2) * scale + bias).softmax(dim=-1)
    return _attend(block.attn, weights, v)


@torch.no_grad()
def dense_class_maps(tower: ClipTower, images: torch.Tensor, class_text: torch.Tensor, variant: str = "clip",
                     pos_mode: str = "bicubic", autocast: Callable[[], ContextManager] = contextlib.nullcontext
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine maps ``(B, K, gh, gw)`` of every class, CLIP's zero-shot class probabilities ``(B, K)``).

    ``class_text``: L2-normalised text rows ``(K, E)``; ``variant``: a name of :data:`LAST_BLOCKS`.
    The probabilities come from the last block as trained (:meth:`ClipTower.class_probabilities`).
    ``autocast``: the context of the blocks; the readout and the cosines run in float32.
    """
    last_block = LAST_BLOCKS.get(variant)
    with autocast():
        x, grid = tower.embed(images.to(tower.device), pos_mode=pos_mode)
        last = tower.num_blocks - 1
        x, _ = tower.run_blocks(x, last)
        tokens = last_block(tower, tower.blocks[last], x, grid)
        trained = tokens if variant == "clip" else tower.block(last, x)[0]  # vanilla's last block is the trained one
    with torch.autocast(x.device.type, enabled=False):
        patches = F.normalize(tower.readout(tokens[:, 1:]), dim=-1)
        maps = torch.einsum("bnd,kd->bkn", patches, class_text.float())
        return maps.reshape(maps.shape[0], maps.shape[1], *grid), tower.class_probabilities(trained, class_text)
