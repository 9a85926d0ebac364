"""tedloc's small ViT, registered with timm: what stands in for DINO's ViT-S/16 offline.

DiPS (thesis ch. 2) finds proposals in the class-token attention of a self-supervised ViT. No such
weights can be downloaded here, so the offline recipes train this ViT with ``tedloc pretrain`` (a
supervised classifier) and take its attention instead. It is timm's ``VisionTransformer`` (so every
ViT code path is the real one): 8x8 patches, 192 channels, 4 blocks of 6 heads (DiPS's map set needs
heads 0-3), 64x64 inputs by default (an 8x8 grid, Tiny ImageNet's native size).
"""
from __future__ import annotations

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer, _create_vision_transformer

__all__ = ["tedloc_vit_tiny"]


@register_model
def tedloc_vit_tiny(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """A 1.8 M-parameter ViT (patch 8, width 192, depth 4, 6 heads) at 64x64; no pretrained weights."""
    if pretrained:
        raise ValueError("tedloc_vit_tiny has no pretrained weights; train it with `tedloc pretrain`")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    args = {"patch_size": 8, "embed_dim": 192, "depth": 4, "num_heads": 6, "img_size": 64, **kwargs}
    # timm's ViT-Ti/16 configuration supplies the default config; its weights are never loaded
    return _create_vision_transformer("vit_tiny_patch16_224", pretrained=False, **args)
