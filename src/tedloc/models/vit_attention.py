"""Self-attention maps of a timm ViT's last block: the class token's attention to the patches, per head.

DiPS (thesis ch. 2) finds object proposals in these maps of a self-supervised ViT (DINO). A timm
``VisionTransformer``-style model works whose last block's ``attn`` is timm's plain ``Attention`` (a
fused ``qkv`` projection, ``num_heads``, ``scale``, optional q/k norms; attentions with a relative
position bias or rotary embeddings, as BEiT's and EVA's, are refused): the block's input is captured by
a hook during ``forward_features`` and its attention ``softmax(q k^T * scale)`` is recomputed
exactly, whatever attention kernel the model runs with (fused or not).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.errors import TedlocError

__all__ = ["last_block_attention", "cls_attention_maps", "patch_grid", "last_block_input", "attention_of_input",
           "class_token_maps", "check_attention", "check_heads"]


def check_attention(model: nn.Module) -> None:
    """Refuse (one line) a model whose class-token attention maps tedloc cannot compute: no timm plain
    ``Attention`` in its last block (a CNN, BEiT, EVA) or no class token."""
    _attention_module(model)
    if getattr(model, "cls_token", None) is None:
        raise TedlocError(f"{type(model).__name__}: no class token, so no class-token attention maps")


def check_heads(model: nn.Module, heads: tuple[int, ...]) -> None:
    """Refuse (one line) head indices that the last block of ``model`` does not have."""
    count = _attention_module(model).num_heads
    bad = [h for h in heads if not 0 <= int(h) < count]
    if bad:
        raise TedlocError(f"{type(model).__name__} has {count} attention heads (0-{count - 1}); asked for {bad}")


def _attention_module(model: nn.Module) -> nn.Module:
    from timm.layers import Attention

    blocks = getattr(model, "blocks", None)
    attn = getattr(blocks[-1], "attn", None) if blocks is not None and len(blocks) else None
    if attn is None:
        raise TedlocError(f"{type(model).__name__}: attention maps need a timm ViT whose last block has a "
                          f"self-attention (a CNN has no attention)")
    if type(attn) is not Attention:  # BEiT's relative position bias, EVA's rotary embeddings: other formulas
        raise TedlocError(f"{type(model).__name__}: its attention ({type(attn).__module__}.{type(attn).__name__}) "
                          f"is not timm's plain Attention, whose softmax(q k^T * scale) tedloc recomputes")
    return attn


def patch_grid(model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The patch grid ``(gh, gw)`` of ``model`` for images of ``(height, width)``."""
    embed = model.patch_embed
    if hasattr(embed, "dynamic_feat_size"):
        return tuple(int(g) for g in embed.dynamic_feat_size(tuple(image_size)))
    return tuple(int(g) for g in embed.grid_size)


@contextmanager
def last_block_input(model: nn.Module) -> Iterator[dict]:
    """While open, every forward of ``model`` stores its last block's attention input in the yielded dict
    (``"x"``), for :func:`attention_of_input`."""
    attn = _attention_module(model)
    captured: dict = {}

    def keep(_module, inputs):
        captured["x"] = inputs[0]

    handle = attn.register_forward_pre_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


def attention_of_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last block's attention weights ``(B, heads, T, T)`` (float32, softmax over keys) for its input ``x``
    (the normed tokens its ``attn`` receives)."""
    attn = _attention_module(model)
    b, n, _ = x.shape
    heads = attn.num_heads
    with torch.autocast(x.device.type, enabled=False):  # the maps of any precision are those of float32
        qkv = F.linear(x.float(), attn.qkv.weight.float(), None if attn.qkv.bias is None else attn.qkv.bias.float())
        qkv = qkv.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        q, k = getattr(attn, "q_norm", nn.Identity())(q), getattr(attn, "k_norm", nn.Identity())(k)
        return ((q * attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)


@torch.no_grad()
def last_block_attention(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last block's attention weights ``(B, heads, T, T)`` (softmax over keys), prefix tokens included."""
    with last_block_input(model) as captured:
        model.forward_features(images)
    return attention_of_input(model, captured["x"])


def class_token_maps(model: nn.Module, weights: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """The class token's rows of attention ``weights`` (B, heads, T, T) to the patch tokens on their grid:
    ``(B, heads, gh, gw)`` (other prefix tokens, such as registers, left out; NaN set to 0)."""
    if getattr(model, "cls_token", None) is None:
        raise TedlocError(f"{type(model).__name__}: no class token, so no class-token attention maps")
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    gh, gw = patch_grid(model, tuple(image_size))
    maps = weights[:, :, 0, prefix:]
    if maps.shape[-1] != gh * gw:
        raise TedlocError(f"{type(model).__name__}: {maps.shape[-1]} patch tokens for a {gh}x{gw} grid")
    return torch.nan_to_num(maps.reshape(maps.shape[0], maps.shape[1], gh, gw))


def cls_attention_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The class token's attention to the patch tokens, per head, on the patch grid: ``(B, heads, gh, gw)``
    (other prefix tokens, such as registers, left out; NaN set to 0)."""
    check_attention(model)  # a model without attention is told so first
    return class_token_maps(model, last_block_attention(model, images), tuple(images.shape[-2:]))
