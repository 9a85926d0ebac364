"""What the CAM's variants (HaS, ACoL, SPG, ADL, CutMix; wsolevaluation's methods) share: option checks, the
per-sample random generators of their augmentations, min-max normalised class maps, a classifier's stage
modules and the cross-entropy terms of a batch."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.engine import LossTerm
from tedloc.errors import OptionError

__all__ = ["check_unit", "check_positive", "keyed_rng", "batch_rng", "min_max", "class_map_attention",
           "stage_modules", "stage_names", "find_module", "feature_shapes", "classification_terms", "cross_entropy"]


def check_unit(name: str, value: float) -> None:
    """An :class:`OptionError` naming ``name`` unless ``0 <= value <= 1``."""
    if not 0.0 <= float(value) <= 1.0:
        raise OptionError(f"{name} must be in [0, 1], got {value!r}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """An :class:`OptionError` naming ``name`` unless ``value > 0`` (``>= 0`` with ``allow_zero``)."""
    if not (value >= 0 if allow_zero else value > 0):
        raise OptionError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def keyed_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``'s draws in ``epoch`` (a resumed run draws the same)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def batch_rng(seed: int, epoch: int, indices: torch.Tensor) -> np.random.Generator:
    """The generator of a batch's draws, keyed by the seed, the epoch and the batch's sample indices."""
    return np.random.default_rng([int(seed), int(epoch), *[int(i) for i in indices.reshape(-1).tolist()]])


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map (the last two dimensions) scaled to [0, 1] by its min and max; a constant map gives NaN, as
    wsolevaluation's ``normalize_tensor`` (comparisons with it are false: it seeds and erases nothing)."""
    flat = maps.flatten(-2)
    low, high = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    return ((flat - low) / (high - low)).reshape(maps.shape)


def class_map_attention(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The min-max normalised map of each image's class: ``maps`` (B, K, h, w), ``labels`` (B,) -> (B, 1, h, w),
    detached (wsolevaluation's ``get_attention``)."""
    picked = maps.detach()[torch.arange(len(labels), device=maps.device), labels.long()]
    return min_max(picked).unsqueeze(1)


def stage_modules(model: nn.Module) -> list[tuple[str, int]]:
    """``(module path, channels)`` of a timm classifier's feature stages (its ``feature_info``), shallowest first;
    an entry naming no module is left out."""
    info = getattr(model, "feature_info", None) or []
    stages = []
    for i, entry in enumerate(info):
        name = entry.get("module") if isinstance(entry, dict) else info.module_name(i)
        channels = entry["num_chs"] if isinstance(entry, dict) else info.channels(i)
        if name:
            stages.append((name, int(channels)))
    return stages


def stage_names(model: nn.Module) -> list[str]:
    """The module paths of a timm classifier's stages (its ``feature_info``), shallowest first."""
    return [name for name, _ in stage_modules(model)]


def find_module(model: nn.Module, name: str, option: str, arch: str) -> nn.Module:
    """``model``'s submodule at the dotted path ``name``; an :class:`OptionError` naming ``option`` and the
    architecture's stages when there is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        stages = ", ".join(stage_names(model)) or "none listed"
        raise OptionError(f"{option}: {arch} has no module {name!r} (its stages: {stages})") from None


@torch.no_grad()
def feature_shapes(model: nn.Module, input_size: int, names: tuple[str, ...], method: str, arch: str
                   ) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """(the output shapes of the submodules ``names``, the shape of ``forward_features``) for one image of
    ``input_size`` (random weights, eval mode); an :class:`OptionError` when the features are not a
    (B, C, h, w) map (``method`` needs a CNN)."""
    modules = [find_module(model, n, f"{method} layers", arch) for n in names]
    shapes: dict[int, tuple[int, ...]] = {}

    def record(i: int, output) -> None:
        shapes.setdefault(i, tuple(output.shape) if isinstance(output, torch.Tensor) else ())

    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: record(i, out)) for i, m in enumerate(modules)]
    was_training = model.training
    model.eval()
    try:
        features = model.forward_features(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    bad = [n for i, n in enumerate(names) if len(shapes.get(i, ())) != 4]
    if features.ndim != 4 or bad:
        raise OptionError(f"arch: {method} needs a CNN whose features are (B, C, h, w) maps; {arch} gives "
                          f"{tuple(features.shape)}" + (f" (and {', '.join(bad)} no map)" if bad else ""))
    return [shapes[i] for i in range(len(names))], tuple(features.shape)


def classification_terms(logits: torch.Tensor, losses: torch.Tensor, labels: torch.Tensor) -> dict[str, LossTerm]:
    """The engine's terms of a batch: ``loss``, the sum of the per-sample ``losses`` (B,), and ``top1`` (logged)."""
    n = len(labels)
    return {"loss": LossTerm(losses.float().sum(), n),
            "top1": LossTerm(100.0 * (logits.argmax(1) == labels).sum(), n, weight=0.0)}


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (B,) in float32."""
    return F.cross_entropy(logits.float(), labels, reduction="none")
