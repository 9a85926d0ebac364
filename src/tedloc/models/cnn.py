"""Small residual CNNs for the offline world, registered as timm models.

They train from scratch on small images (Tiny ImageNet at 64x64, the synthetic benchmark) on a
few CPU cores, and expose timm's interface (``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``, ``num_features``, ``feature_info``), so everything that
takes a timm name takes them too: ``timm.create_model("tedloc_resnet_tiny", num_classes=200)``.

Layout: a stride-2 3x3 stem, then three stages of residual basic blocks (the first block of
stages 2 and 3 has stride 2): total stride 8, i.e. an 8x8 feature map at 64x64 input and 28x28
at 224. No pretrained weights exist for them: they are trained by ``tedloc pretrain``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import register_model

from tedloc.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TinyResNet"]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem (stride 2) + 3 residual stages (strides 1, 2, 2) + global average pooling + linear head."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), stem: int = 24, depth: int = 1,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, **kwargs):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        stages, cin = [], stem
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(_Block(cin, w, stride), *[_Block(w, w, 1) for _ in range(depth - 1)]))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=w, reduction=2 * (2 ** i), module=f"stages.{i}") for i, w in enumerate(widths)]
        self.pretrained_cfg = {"input_size": (3, 64, 64), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                               "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": num_classes,
                               "classifier": "fc", "first_conv": "stem.0"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.modules():  # zero-init the last BN of each residual branch
            if isinstance(block, _Block):
                nn.init.zeros_(block.bn2.weight)

    def get_classifier(self) -> nn.Module:
        """The linear head (timm's interface)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replace the head by a new one for ``num_classes`` (0: identity); ``global_pool`` is ignored."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the last stage's feature map (B, num_features, H/8, W/8)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map (B, C, h, w) -> logits (B, num_classes), or the pooled features (B, C) with ``pre_logits``."""
        x = self.drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))


def _create(widths, stem, depth, pretrained: bool, **kwargs) -> TinyResNet:
    if pretrained:
        raise ValueError("tedloc's small CNNs have no pretrained weights; train them with `tedloc pretrain`")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("img_size", None)
    return TinyResNet(widths, stem, depth, **kwargs)


@register_model
def tedloc_resnet_tiny(pretrained: bool = False, **kwargs) -> TinyResNet:
    """One block per stage, 0.3 M parameters: about 2 min per Tiny ImageNet epoch on 2 CPU cores."""
    return _create((32, 64, 128), 24, 1, pretrained, **kwargs)


@register_model
def tedloc_resnet_small(pretrained: bool = False, **kwargs) -> TinyResNet:
    """Two blocks per stage, wider: 1.3 M parameters."""
    return _create((48, 96, 192), 32, 2, pretrained, **kwargs)
