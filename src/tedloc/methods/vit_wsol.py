"""What the ViT WSOL methods (TS-CAM, SCM, SAT) share: their config (a timm ViT, DeiT-S by default, and the
authors' AdamW), their training task on the CAM's classifier loop (:func:`~tedloc.methods.cam.train.train_classifier`)
and their localizer. Each method's package registers its own :class:`~tedloc.methods.registry.Method`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn as nn

from tedloc.errors import OptionError, TedlocError
from tedloc.methods.base import NetworkLocalizer, option
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig
from tedloc.models.classifier import build_classifier
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.models.vit_wsol import check_vit_arch

__all__ = ["ViTWSOLConfig", "ViTWSOLTask", "ViTWSOLLocalizer", "vit_of", "parameter_groups"]


@dataclass(kw_only=True)
class ViTWSOLConfig(PretrainConfig):
    """The options TS-CAM, SCM and SAT share (defaults: the authors' DeiT-S recipe on CUB, with tedloc's step
    schedule; the shared ones: :class:`~tedloc.methods.base.TrainConfig`)."""

    method_name: ClassVar[str] = "this method"

    arch: str = option("deit_small_patch16_224", "timm ViT with a class token (deit_small_patch16_224, "
                                                 "vit_base_patch16_224, tedloc_vit_tiny, ...)")
    input_size: int = 224
    pretrained: bool = option(True, "start from timm's weights of the ViT (network or cache)")
    optimizer: str = option("adamw", "AdamW (the authors'), or SGD with momentum; no weight decay on biases, "
                                     "norms, tokens and position embeddings", choices=("sgd", "adamw"))
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.05
    lr_step: int = 30
    epochs: int = 60
    drop_path: float = option(0.1, "stochastic depth rate of the ViT's blocks, in [0, 1)")

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.drop_path < 1.0:
            raise OptionError(f"drop_path must be in [0, 1), got {self.drop_path}")
        check_vit_arch(self.arch, self.method_name)


def vit_of(config: ViTWSOLConfig, num_classes: int) -> nn.Module:
    """The timm ViT of ``config`` (its weights as the config says; its classifier is replaced by the method's
    head), with its :class:`~tedloc.data.preprocessing.Preprocessing`."""
    return build_classifier(config.arch, num_classes, config.pretrained, config.encoder_weights, config.input_size,
                            config.resize_size, model_kwargs={"drop_path_rate": config.drop_path})


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups, as timm's ``create_optimizer`` makes them for the authors: no weight decay on
    one-dimensional parameters (biases, norms, SCM's scalars), on biases and on the tokens and position embeddings
    (the ViT's ``no_weight_decay`` names, SAT's ``loc_token`` and ``loc_embed``); ``weight_decay`` on the rest."""
    skip = {f"vit.{name}" for name in getattr(getattr(model, "vit", None), "no_weight_decay", lambda: ())()}
    skip |= {"loc_token", "loc_embed"}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class ViTWSOLTask(ClassifierTask):
    """The cross-entropy of the logits (the CAM's task) with the authors' optimizer groups; a method's subclass
    sets ``localizer_type`` (and changes the loss where it has its own)."""

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """AdamW (``optimizer adamw``) or SGD with (Nesterov) momentum over :func:`parameter_groups`."""
        c = self.config
        groups = parameter_groups(getattr(module, "module", module), c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=c.lr)
        return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov)


class ViTWSOLLocalizer(NetworkLocalizer):
    """A TS-CAM, SCM or SAT network at inference: class = the logits' argmax, maps = the network's
    (``model.map_names``, its own first; those in ``model.class_maps`` are per class: of the given classes, or of
    the predicted ones, ``KIND@pred`` of the predicted ones in any case)."""

    def __init__(self, model: nn.Module, class_names: list[str], preprocessing=None, *, runtime):
        super().__init__(model, class_names, preprocessing, runtime=runtime)
        self.map_kinds = tuple(model.map_names)
        self.class_map_kinds = tuple(model.class_maps)
        self.map_kind = self.map_kinds[0]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities and the map of :attr:`map_kind` (of the predicted class where it has one per class)."""
        scores, maps = self.predict_maps(images, (self.map_kind,))
        return scores, maps[self.map_kind]

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] | None = None,
                     classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and the maps of ``kinds`` (default: all) from one forward pass, each (B, h, w) on the
        patch grid."""
        kinds = self.map_kinds if kinds is None else tuple(kinds)
        unknown = [k for k in kinds if k.removesuffix(PRED_SUFFIX) not in self.map_kinds]
        if unknown:
            raise TedlocError(f"map {unknown[0]!r} not offered; choose from {', '.join(self.map_kinds)}")
        self.model.eval()
        with self.runtime.autocast():
            logits, maps = self.model.localization(self.runtime.to_device(images))
        scores = logits.float().softmax(dim=1)
        predicted = scores.argmax(dim=1)
        given = predicted if classes is None else self.runtime.to_device(classes).long()
        rows = torch.arange(len(scores), device=scores.device)
        out = {}
        for kind in kinds:
            found = maps[kind.removesuffix(PRED_SUFFIX)]
            picked = predicted if kind.endswith(PRED_SUFFIX) else given
            out[kind] = (found[:, 0] if found.shape[1] == 1 else found[rows, picked]).float()
        return scores, out

    @torch.no_grad()
    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """The maps (B, h, w) of :attr:`map_kind` for ``classes`` (the predicted ones when None)."""
        return self.predict_maps(images, (self.map_kind,), classes)[1][self.map_kind]


def network_builder(make: Callable[[nn.Module, int, object], nn.Module]):
    """``(config, num_classes) -> network`` and the registry's ``build(config, num_classes, weights)`` of a method
    whose network is ``make(vit, num_classes, config)``."""

    def network(config, num_classes: int) -> nn.Module:
        return make(vit_of(config, num_classes), num_classes, config)

    def build(config, num_classes: int, weights: dict | None = None) -> nn.Module:
        from dataclasses import replace

        return network(replace(config, pretrained=False, encoder_weights=None), num_classes)

    return network, build
