"""What TS-CAM, SCM and SAT share: a timm ViT run block by block with its attention weights at hand, and a
3x3 convolution on the patch tokens whose channels are the class (semantic) maps, averaged into the logits.

:class:`ViTSemanticNetwork` runs the ViT's own modules (patch embedding, position embedding, blocks, final
norm) with each block's attention computed explicitly (``softmax(q k^T * scale)``, timm's non-fused path, the
same numbers as its fused kernel), so the methods read (TS-CAM, SCM) or change (SAT) the attention of every
block. Any timm ``VisionTransformer`` whose blocks are timm's plain ``Block`` with the plain ``Attention`` and
that has a class token works (DeiT, ViT, tedloc_vit_tiny); other networks are refused in one line
(:func:`check_vit`).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.errors import OptionError, TedlocError
from tedloc.models.vit_attention import check_attention, patch_grid

__all__ = ["check_vit", "check_vit_arch", "attention_forward", "ViTSemanticNetwork", "min_max_norm",
           "coupled_maps"]


def check_vit(model: nn.Module) -> None:
    """Refuse (a :class:`TedlocError`, one line) a network that is not a timm ViT with a class token and timm's
    plain ``Block``/``Attention`` in every block."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    check_attention(model)  # no blocks (a CNN), no class token, another attention in the last block
    for i, block in enumerate(model.blocks):
        if type(block) is not Block or type(block.attn) is not Attention:
            raise TedlocError(f"{type(model).__name__}: block {i} is a {type(block).__name__} with a "
                              f"{type(getattr(block, 'attn', None)).__name__}, not timm's plain Block and Attention")
    if getattr(model, "pos_embed", None) is None:
        raise TedlocError(f"{type(model).__name__}: no absolute position embedding")


@lru_cache(maxsize=64)
def _arch_problem(arch: str) -> str | None:
    import timm

    import tedloc.models.tiny_vit  # noqa: F401  (registers tedloc_vit_tiny)

    if not timm.models.is_model(arch):
        return "unknown architecture; see timm.list_models()"
    try:
        with torch.device("meta"):  # the modules only: no memory, no weights
            model = timm.create_model(arch, pretrained=False, num_classes=2)
        check_vit(model)
    except TedlocError as e:
        return str(e)
    return None


def check_vit_arch(arch: str, method: str) -> None:
    """Refuse (an :class:`OptionError` naming the option, one line) an ``arch`` that ``method`` cannot use: not a
    timm ViT with a class token and plain attention (a CNN, Swin, BEiT, EVA)."""
    problem = _arch_problem(str(arch))
    if problem is not None:
        raise OptionError(f"arch {arch!r}: {method} needs a timm ViT with a class token and timm's plain attention "
                          f"in every block (deit_small_patch16_224, vit_base_patch16_224, tedloc_vit_tiny, ...): "
                          f"{problem}")


def attention_forward(attn: nn.Module, x: torch.Tensor, key_gate=None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's ``Attention`` on tokens ``x`` (B, N, C), computed explicitly: ``(output (B, N, C), weights
    softmax(q k^T * scale) (B, heads, N, N), logits q k^T * scale (B, heads, N, N))``. ``key_gate`` (optional):
    a function of the logits giving a (B, 1, 1, N) gate (or None) that multiplies the softmax weights column by
    column before they mix the values (SAT's spatial-aware attention; the returned weights are those before it)."""
    b, n, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    weights = logits.softmax(dim=-1)
    keys = key_gate(logits) if key_gate is not None else None
    mixing = weights if keys is None else weights * keys
    out = (attn.attn_drop(mixing) @ v).transpose(1, 2).reshape(b, n, -1)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), weights, logits


def min_max_norm(maps: torch.Tensor) -> torch.Tensor:
    """Each map (the last dimension; ``(B, N)`` or ``(B, K, N)``) shifted to a minimum of 0 and divided by its
    maximum then (SCM's ``norm_cam``; a constant map becomes 0 instead of NaN)."""
    shifted = maps - maps.min(dim=-1, keepdim=True).values
    return shifted / shifted.max(dim=-1, keepdim=True).values.clamp_min(torch.finfo(maps.dtype).tiny)


def coupled_maps(attention: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    """TS-CAM's semantic-attention coupling: the class-agnostic attention map (B, 1, h, w) times every class's
    semantic map (B, K, h, w)."""
    return attention * semantic


class ViTSemanticNetwork(nn.Module):
    """A timm ViT (``vit``, its classifier removed) and a 3x3 convolution (``head``) from the patch tokens to
    ``num_classes`` semantic maps; the logits are their spatial mean (TS-CAM's, SCM's and SAT's classifier).

    ``preprocessing`` and ``pretrained_cfg`` are the ViT's (the normalisation its weights expect).
    """

    def __init__(self, vit: nn.Module, num_classes: int):
        super().__init__()
        check_vit(vit)
        vit.reset_classifier(0)
        self.vit = vit
        self.head = nn.Conv2d(vit.embed_dim, num_classes, kernel_size=3, stride=1, padding=1)
        self.preprocessing = getattr(vit, "preprocessing", None)
        self.pretrained_cfg = getattr(vit, "pretrained_cfg", None)

    @property
    def prefix(self) -> int:
        """How many tokens precede the patch tokens (the class token, and a distillation or register tokens)."""
        return int(getattr(self.vit, "num_prefix_tokens", 1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The tokens entering the first block (prefix tokens, then patch tokens, position embedding added)."""
        vit = self.vit
        x = vit._pos_embed(vit.patch_embed(images))
        return vit.norm_pre(vit.patch_drop(x))

    def run_blocks(self, x: torch.Tensor, key_gate_of=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Tokens ``x`` through every block and the final norm: ``(tokens, each block's attention weights)``.
        ``key_gate_of(i)`` (optional): block ``i``'s ``key_gate`` (see :func:`attention_forward`) or None."""
        weights = []
        for i, block in enumerate(self.vit.blocks):
            out, w, _ = attention_forward(block.attn, block.norm1(x), key_gate_of(i) if key_gate_of else None)
            x = x + block.drop_path1(block.ls1(out))
            x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
            weights.append(w)
        return self.vit.norm(x), weights

    def grid(self, images: torch.Tensor) -> tuple[int, int]:
        """The patch grid of ``images``."""
        return patch_grid(self.vit, tuple(images.shape[-2:]))

    def semantic(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The semantic maps (B, K, h, w) of the patch tokens (B, h*w, C)."""
        b, p, c = patch_tokens.shape
        if p != grid[0] * grid[1]:
            raise TedlocError(f"{p} patch tokens for a {grid[0]}x{grid[1]} grid")
        return self.head(patch_tokens.transpose(1, 2).reshape(b, c, *grid).contiguous())

    def class_attention(self, weights: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """TS-CAM's class-agnostic map (B, 1, h, w): the class token's attention to the patches, averaged over
        the heads and summed over the blocks."""
        p = self.prefix
        rows = sum(w.mean(dim=1)[:, 0, p:p + grid[0] * grid[1]] for w in weights)
        return rows.reshape(rows.shape[0], 1, *grid)

    @staticmethod
    def logits_of(semantic: torch.Tensor) -> torch.Tensor:
        """The class scores: each semantic map's spatial mean."""
        return F.adaptive_avg_pool2d(semantic, 1).flatten(1)
