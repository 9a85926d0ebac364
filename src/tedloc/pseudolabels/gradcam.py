"""Grad-CAM (Selvaraju et al. 2017) on any layer, through the ``grad-cam`` package (pytorch-grad-cam).

For classifiers whose head is not pooling + linear, or to explain another layer than the last.
The target layer defaults to the module that produces the last feature map (timm's
``feature_info``), or the last block for ViTs, whose tokens are laid out on the patch grid
derived from the input (prefix tokens dropped; never a hard-coded 14x14).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from tedloc.errors import TedlocError

__all__ = ["grad_cams", "default_target_layer", "find_target_layer", "target_layer_of"]


def default_target_layer(model: nn.Module) -> nn.Module:
    """The default Grad-CAM target: the last block's ``norm1`` for ViTs, else the module of the last
    ``feature_info`` entry (TedlocError if the model has neither)."""
    if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens"):
        return model.blocks[-1].norm1
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1]
        name = last["module"] if isinstance(last, dict) else info.module_name(-1)
        return model.get_submodule(name)
    raise TedlocError(f"{type(model).__name__}: give the Grad-CAM target layer explicitly")


def find_target_layer(model: nn.Module, path: str) -> nn.Module:
    """The submodule of ``model`` at the dotted ``path`` (``stages.2``, ``layer4``, ``blocks.11.norm1``); a path that
    names no module is a one-line :class:`TedlocError` listing the closest module names."""
    import difflib

    names = [name for name, _ in model.named_modules() if name]
    if path in names:
        return model.get_submodule(path)
    close = difflib.get_close_matches(path, names, n=6, cutoff=0.5)
    if not close:  # nothing alike: the top-level modules, to start from
        close = [name for name, _ in model.named_children()][:8]
    raise TedlocError(f"target layer {path!r} is no module of {type(model).__name__}; close names: "
                      f"{', '.join(close) or 'none'}")


def target_layer_of(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """``layer`` as a module of ``model``: a module as it is, a dotted path through :func:`find_target_layer`,
    None the :func:`default_target_layer`."""
    if layer is None:
        return default_target_layer(model)
    return find_target_layer(model, layer) if isinstance(layer, str) else layer


def _vit_reshape(model: nn.Module, image_size: tuple[int, int]):
    grid = model.patch_embed.dynamic_feat_size(image_size) if hasattr(model.patch_embed, "dynamic_feat_size") else \
        model.patch_embed.grid_size
    prefix = model.num_prefix_tokens

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:  # a layer with a feature map already (the patch embedding's convolution)
            return tokens
        t = tokens[:, prefix:]
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], int(grid[0]), int(grid[1]))

    return reshape


def grad_cams(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, target_layer: nn.Module | None = None
              ) -> torch.Tensor:
    """Grad-CAMs (B, H, W) in [0, 1] at the input resolution for ``classes``."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise TedlocError("Grad-CAM needs the grad-cam package: pip install --no-deps 'grad-cam>=1.5' "
                          "(see docs/INSTALL.md for why --no-deps)") from None
    layer = target_layer or default_target_layer(model)
    reshape = _vit_reshape(model, tuple(images.shape[-2:])) if hasattr(model, "num_prefix_tokens") else None
    was_training = model.training
    model.eval()
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    model.train(was_training)
    return torch.from_numpy(maps)
