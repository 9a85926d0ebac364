"""ACoL (Adversarial Complementary Learning; Zhang et al. 2018) on any timm CNN, as wsolevaluation builds it.

Two classifier branches of the backbone's feature map, each ``conv3x3(C, W) - ReLU - conv3x3(W, W) - ReLU -
conv1x1(W, K)`` whose class maps are averaged into logits. Branch A sees the features; the min-max normalised
map of the class (the true one in training, else A's prediction) marks A's most discriminative region, which is
erased (features set to 0 where it is at least ``threshold``) before branch B sees them. Both branches' losses
are summed; the localization map is the element-wise maximum of both branches' normalised maps of the class.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.methods.cam_variants import class_map_attention, min_max

__all__ = ["erase_attention", "ACoLNetwork", "classifier_branch"]


def erase_attention(features: torch.Tensor, attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """``features`` (B, C, h, w) with every channel set to 0 where ``attention`` (B, 1, h, w) is ``>= threshold``."""
    return features * (~attention.ge(threshold)).to(features.dtype)


def classifier_branch(channels: int, width: int, num_classes: int) -> nn.Sequential:
    """One ACoL branch: class maps (B, K, h, w) of a (B, C, h, w) feature map (He-initialised, zero biases)."""
    branch = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(width, num_classes, 1))
    for m in branch.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return branch


class ACoLNetwork(nn.Module):
    """A timm CNN without its head (``backbone``) and ACoL's two branches; ``forward(images)`` gives branch A's
    logits (what the classifier predicts), ``forward(images, labels, outputs=True)`` every output."""

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int, width: int = 1024,
                 threshold: float = 0.7):
        super().__init__()
        self.backbone = backbone
        self.branch_a = classifier_branch(channels, width, num_classes)
        self.branch_b = classifier_branch(channels, width, num_classes)
        self.threshold = float(threshold)
        self.preprocessing = getattr(backbone, "preprocessing", None)

    def branches(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``logits`` (A's), ``logits_b``, ``maps_a``, ``maps_b`` (B, K, h, w) and ``labels`` (the erasing's class)."""
        maps_a = self.branch_a(features)
        logits = maps_a.mean(dim=(2, 3))
        labels = logits.argmax(dim=1) if labels is None else labels.long()
        erased = erase_attention(features, class_map_attention(maps_a, labels), self.threshold)
        maps_b = self.branch_b(erased)
        return {"logits": logits, "logits_b": maps_b.mean(dim=(2, 3)), "maps_a": maps_a, "maps_b": maps_b,
                "labels": labels}

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, outputs: bool = False):
        """Branch A's logits (B, K), or with ``outputs`` the dict of :meth:`branches`."""
        out = self.branches(self.backbone.forward_features(images), labels)
        return out if outputs else out["logits"]

    def fused_maps(self, images: torch.Tensor, classes: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A's logits, the fused maps (B, h, w) of ``classes`` (None: A's prediction), erasing with them)."""
        out = self.forward(images, classes, outputs=True)
        index = torch.arange(len(out["labels"]), device=images.device)
        a = min_max(out["maps_a"][index, out["labels"]].float())
        b = min_max(out["maps_b"][index, out["labels"]].float())
        return out["logits"], torch.maximum(a, b)
