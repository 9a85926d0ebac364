"""Class activation maps (Zhou et al. 2016) of a classifier whose head is pooling + linear.

``cam[b] = mean_c W[y_b, c] * F[b, c]`` over the last feature map F: the channel *mean*, no bias,
no ReLU, exactly as wsolevaluation computes CAMs (the scale does not matter after min-max).
Works for any timm CNN classifier (and tedloc's small CNNs): ``forward_features`` gives F,
``get_classifier()`` gives the linear layer W. A timm ViT's F is its final patch tokens on the patch
grid (through ``fc_norm`` when the model has one): the class weights applied token by token.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.errors import TedlocError

__all__ = ["class_activation_maps", "cam_and_logits", "cams_of_targets"]


def _linear_head(model: nn.Module) -> nn.Linear:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head
    raise TedlocError(f"{type(model).__name__}: CAM needs a classifier whose head is global pooling + nn.Linear "
                      f"(found {type(head).__name__}); use Grad-CAM for other heads")


def _vit_feature_map(model: nn.Module, tokens: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """A ViT's patch tokens (B, T, C), prefix tokens dropped, through ``fc_norm``, on the grid: (B, C, h, w)."""
    from tedloc.models.vit_attention import patch_grid

    if not hasattr(model, "patch_embed") or not hasattr(model, "num_prefix_tokens"):
        raise TedlocError(f"CAM needs a (B, C, h, w) feature map, got {tuple(tokens.shape)}")
    patches = getattr(model, "fc_norm", nn.Identity())(tokens[:, int(model.num_prefix_tokens):])
    h, w = patch_grid(model, image_size)
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


@torch.no_grad()
def cam_and_logits(model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(CAMs (B, h, w) for ``classes`` or the predicted classes, logits (B, K)) in one forward pass."""
    cams, logits = cams_of_targets(model, images, {"cam": classes})
    return cams["cam"], logits


def cams_of_targets(model: nn.Module, images: torch.Tensor, targets: dict[str, torch.Tensor | None]
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(name -> CAMs (B, h, w) of the classes ``targets[name]`` (None: the predicted ones), logits (B, K)) from
    one forward pass: the true and the predicted class's CAM at the cost of one."""
    tokens = model.forward_features(images)
    logits = model.forward_head(tokens)
    features = _vit_feature_map(model, tokens, tuple(images.shape[-2:])) if tokens.ndim == 3 else tokens
    if features.ndim != 4:
        raise TedlocError(f"CAM needs a (B, C, h, w) feature map, got {tuple(features.shape)}")
    weights = _linear_head(model).weight  # K x C
    cams = {}
    for name, classes in targets.items():
        target = logits.argmax(dim=1) if classes is None else classes.to(logits.device).long()
        cams[name] = torch.einsum("bc,bchw->bhw", weights[target], features) / features.shape[1]
    return cams, logits


def class_activation_maps(model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """CAMs (B, h, w) at feature resolution for ``classes`` (default: the predicted classes)."""
    return cam_and_logits(model, images, classes)[0]
