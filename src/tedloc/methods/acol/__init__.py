"""ACoL (Zhang et al., CVPR 2018) as wsolevaluation trains it: two complementary classifier branches on a timm
CNN's features, the second seeing them with the first's most activated region erased
(:mod:`~tedloc.methods.acol.network`); it localizes with both branches' maps fused by their maximum.
``tedloc train --method acol``. See docs/zoo/wsolevaluation.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.methods.acol.network import ACoLNetwork, classifier_branch, erase_attention
from tedloc.methods.base import NetworkLocalizer, option
from tedloc.methods.cam import METHOD as CAM
from tedloc.methods.cam.localizer import classifier_reference
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.cam_variants import check_positive, check_unit, classification_terms, cross_entropy, \
    feature_shapes
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.models.classifier import build_classifier
from tedloc.utils.device import Runtime

__all__ = ["ACoLConfig", "ACoLNetwork", "ACoLLocalizer", "ACoLTask", "build_acol_network", "train_acol",
           "erase_attention", "classifier_branch", "METHOD"]

RUN_KIND = "acol"


@dataclass(kw_only=True)
class ACoLConfig(PretrainConfig):
    """The CAM's options and ACoL's (default: wsolevaluation's ``acol_threshold`` 0.7, branches of 1024
    channels)."""

    acol_threshold: float = option(0.7, "erase where branch A's normalised class map is at least this, in [0, 1]")
    acol_width: int = option(1024, "channels of the branches' hidden convolutions")

    def __post_init__(self):
        super().__post_init__()
        check_unit("acol_threshold", self.acol_threshold)
        check_positive("acol_width", self.acol_width)


def _network(config: ACoLConfig, num_classes: int, pretrained: bool) -> ACoLNetwork:
    backbone = build_classifier(config.arch, num_classes, pretrained and config.pretrained,
                                config.encoder_weights if pretrained else None, config.input_size,
                                config.resize_size)
    _, shape = feature_shapes(backbone, config.input_size, (), "acol", config.arch)
    backbone.reset_classifier(0)
    return ACoLNetwork(backbone, shape[1], num_classes, config.acol_width, config.acol_threshold)


def build_acol_network(config: ACoLConfig, num_classes: int, weights: dict | None = None) -> ACoLNetwork:
    """The ACoL network of ``config``, random weights (an :class:`~tedloc.errors.OptionError` for a backbone
    without a (B, C, h, w) feature map)."""
    return _network(config, num_classes, pretrained=False)


def acol_reference(config: ACoLConfig, model: torch.nn.Module) -> Preprocessing | None:
    """The normalisation of the backbone's weights when they came from timm or a file (None: trained here)."""
    return classifier_reference(config, model.backbone)


class ACoLLocalizer(NetworkLocalizer):
    """An ACoL network as a localizer: branch A's class scores and the fused map of a class."""

    map_kind = "cam"

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax class probabilities and the fused map of the predicted class (erasing with it)."""
        return self._maps(images, None)

    @torch.no_grad()
    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Fused maps (B, h, w) of ``classes`` (the erasing uses them too, as wsolevaluation's GT-known maps)."""
        return self._maps(images, classes)[1]

    def _maps(self, images: torch.Tensor, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        with self.runtime.autocast():
            logits, maps = self.model.fused_maps(self.runtime.to_device(images), classes)
        return logits.float().softmax(dim=1), maps.float().nan_to_num(0.0)


class ACoLTask(ClassifierTask):
    """The sum of both branches' cross-entropies (the true class erases); validation scores the fused map."""

    localizer_type = ACoLLocalizer

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict:
        """``CE(A) + CE(B)`` per image (and A's top-1, logged only)."""
        labels = batch["label"]
        out = module(batch["image"].contiguous(memory_format=torch.channels_last), labels, outputs=True)
        losses = cross_entropy(out["logits"], labels) + cross_entropy(out["logits_b"], labels)
        return classification_terms(out["logits"], losses, labels)


def train_acol(data, out, config: ACoLConfig = ACoLConfig(), resume: bool = True, *, runtime: Runtime
               ) -> list[dict]:
    """Train (or resume) an ACoL run; returns the per-epoch metrics."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND,
                            network=lambda c, n: _network(c, n, pretrained=True), task_type=ACoLTask)


METHOD = register_method(Method(
    name="acol",
    description="ACoL: two classifier branches, the second on features with the first's top region erased; "
                "their fused maps localize",
    run_kind=RUN_KIND,
    config=ACoLConfig,
    train=train_acol,
    build=build_acol_network,
    localizer=ACoLLocalizer,
    reference_preprocessing=acol_reference,
    search_space={**SHARED_SEARCH_SPACE, "acol_threshold": ("uniform", 0.0, 1.0)},
    summary=CAM.summary,
))
