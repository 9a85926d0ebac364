"""SPG (Self-produced Guidance; Zhang et al. 2018) on any timm CNN, as wsolevaluation builds it.

The classifier is the CAM's (its class map ``W[y] . F + b[y]`` is wsolevaluation's 1x1-convolution class map
``SPG_A4``, whose average is the logits). Two intermediate feature maps (``taps``: wsolevaluation's ResNet-50
taps the first block of ``layer3`` and the whole of ``layer3``; its Inception-v3 ``Mixed_5d`` and ``Mixed_6d``)
feed branch B: each through its own ``conv3x3(C_i, W) - ReLU``, then a shared ``conv3x3(W, W) - ReLU -
conv1x1(W, 1)``: the B1 and B2 logits. Branch C maps the last feature map through ``conv3x3(C, W) - ReLU -
conv1x1(W, 1)``. The losses (:mod:`~tedloc.methods.spg.losses`) supervise B2 with seeds of the class map, B1
with seeds of B2, C with seeds of B1 and B2 fused.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SPGNetwork", "spg_head"]


def _xavier(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def spg_head(channels: int, width: int, out: int | None) -> nn.Sequential:
    """``conv3x3(channels, width) - ReLU`` (then ``conv1x1(width, out)`` when ``out``), Xavier-initialised."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
    if out:
        layers.append(nn.Conv2d(width, out, 1))
    return _xavier(nn.Sequential(*layers))


class SPGNetwork(nn.Module):
    """A timm classifier (``classifier``) with SPG's branches on its modules ``taps`` (two dotted paths, whose
    outputs have ``tap_channels``) and on its last feature map (``channels``). It offers the classifier's
    interface (``forward_features``, ``forward_head``, ``get_classifier``, ``feature_info``), so the CAM and its
    family see the classifier; ``forward(images, labels)`` gives every SPG output."""

    def __init__(self, classifier: nn.Module, taps: tuple[str, str], tap_channels: tuple[int, int], channels: int,
                 width: int = 512):
        super().__init__()
        self.classifier = classifier
        self.taps = tuple(taps)
        self.b1 = spg_head(tap_channels[0], width, None)
        self.b2 = spg_head(tap_channels[1], width, None)
        self.b_shared = spg_head(width, width, 1)
        self.c = spg_head(channels, width, 1)
        self.preprocessing = getattr(classifier, "preprocessing", None)
        self.feature_info = [dict(entry, module=f"classifier.{entry['module']}")
                             for entry in getattr(classifier, "feature_info", []) if isinstance(entry, dict)]
        self._captured: dict[int, torch.Tensor] | None = None
        for i, name in enumerate(self.taps):
            classifier.get_submodule(name).register_forward_hook(
                lambda mod, inputs, output, i=i: self._capture(i, output))

    def _capture(self, i: int, output: torch.Tensor) -> None:
        if self._captured is not None:
            self._captured[i] = output

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's last feature map."""
        return self.classifier.forward_features(images)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The classifier's head."""
        return self.classifier.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        """The classifier's linear layer."""
        return self.classifier.get_classifier()

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        """Logits (B, K); with ``labels``, the dict of ``logits``, ``class_map`` (B, 1, h, w: the labels' map),
        ``b1``, ``b2`` and ``c`` (B, 1, h_i, w_i)."""
        if labels is None:
            return self.classifier(images)
        self._captured = {}
        try:
            features = self.forward_features(images)
            taps = [self._captured[0], self._captured[1]]
        finally:
            self._captured = None
        logits = self.forward_head(features)
        head = self.get_classifier()
        weights = head.weight[labels.long()]
        class_map = torch.einsum("bc,bchw->bhw", weights, features)
        if head.bias is not None:
            class_map = class_map + head.bias[labels.long()][:, None, None]
        return {"logits": logits, "class_map": class_map.unsqueeze(1),
                "b1": self.b_shared(self.b1(taps[0])), "b2": self.b_shared(self.b2(taps[1])), "c": self.c(features)}
