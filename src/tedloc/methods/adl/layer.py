"""The attention-based dropout layer (ADL; Choe & Shim 2019) and its placement in any timm CNN.

In training, ADL takes the channel mean of a feature map as its self-attention; it multiplies the map either by
the drop mask (0 where the attention is at least ``threshold`` times the image's maximum, 1 elsewhere) or by the
importance map (the attention's sigmoid), the drop mask with probability ``drop_rate``, one choice per forward
pass for the whole batch. At inference it is the identity. Here it is applied to the output of chosen modules
through forward hooks, so the network's weights keep the classifier's names.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.methods.cam_variants import find_module, stage_names

__all__ = ["ADL", "drop_mask", "importance_map", "default_adl_layers", "insert_adl"]


def drop_mask(attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where ``attention`` (B, 1, h, w) is below ``threshold`` times its image's maximum, else 0 (float)."""
    top = attention.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (attention < top * threshold).to(attention.dtype)


def importance_map(attention: torch.Tensor) -> torch.Tensor:
    """The attention's sigmoid."""
    return torch.sigmoid(attention)


class ADL(nn.Module):
    """Attention-based dropout (identity in eval mode). ``generator``: the CPU generator of the per-pass draw
    (None: torch's global one)."""

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9):
        super().__init__()
        self.drop_rate, self.threshold = float(drop_rate), float(threshold)
        self.generator: torch.Generator | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (B, C, h, w) times the drop mask or the importance map (training), or as they are."""
        if not self.training:
            return features
        attention = features.mean(dim=1, keepdim=True)
        use_drop = float(torch.rand([], generator=self.generator)) + self.drop_rate >= 1.0
        return features * (drop_mask(attention, self.threshold) if use_drop else importance_map(attention))

    def extra_repr(self) -> str:
        """The layer's options."""
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def default_adl_layers(model: nn.Module) -> tuple[str, ...]:
    """wsolevaluation's placement on ResNet-50, for any timm CNN: after the first block of the second-last stage,
    and after the first and the last block of the last stage (a stage that is not a sequence of blocks: after
    the stage)."""
    stages = stage_names(model)[-2:]
    layers: list[str] = []
    for k, stage in enumerate(stages):
        module = model.get_submodule(stage)
        blocks = [name for name, _ in module.named_children()] if isinstance(module, nn.Sequential) else []
        picks = [blocks[0]] if k == 0 or not blocks else [blocks[0], blocks[-1]]
        for pick in (picks if blocks else [None]):
            name = stage if pick is None else f"{stage}.{pick}"
            if name not in layers:
                layers.append(name)
    return tuple(layers)


def insert_adl(model: nn.Module, layers: tuple[str, ...], drop_rate: float, threshold: float, arch: str = "the model"
               ) -> nn.ModuleList:
    """Apply an :class:`ADL` to the output of each module of ``layers`` (dotted paths; an unknown one is an
    :class:`~tedloc.errors.OptionError` naming ``adl_layers``); the layers are kept as ``model.adl``."""
    modules = [find_module(model, name, "adl_layers", arch) for name in layers]
    model.adl = nn.ModuleList(ADL(drop_rate, threshold) for _ in layers)
    for module, adl in zip(modules, model.adl):
        module.register_forward_hook(lambda mod, inputs, output, adl=adl: adl(output))
    return model.adl
