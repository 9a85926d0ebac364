"""SPG (Self-produced Guidance; Zhang et al., ECCV 2018) as wsolevaluation trains it: the CAM's classifier with
branches B (on two intermediate feature maps) and C (on the last one) trained on seeds of the class map and of
each other (:mod:`~tedloc.methods.spg.network`, :mod:`~tedloc.methods.spg.losses`); it localizes with its CAM.
``tedloc train --method spg``. See docs/zoo/wsolevaluation.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import OptionError
from tedloc.methods.base import option
from tedloc.methods.cam import METHOD as CAM
from tedloc.methods.cam.localizer import CAMLocalizer, classifier_reference
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.cam_variants import (check_positive, check_unit, classification_terms, cross_entropy,
                                        feature_shapes, stage_names)
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.methods.spg.losses import seed_mask, seeded_bce, spg_loss_terms
from tedloc.methods.spg.network import SPGNetwork, spg_head
from tedloc.models.classifier import build_classifier
from tedloc.utils.device import Runtime

__all__ = ["SPGConfig", "SPGNetwork", "SPGTask", "build_spg_network", "default_spg_taps", "train_spg", "seed_mask",
           "seeded_bce", "spg_loss_terms", "spg_head", "METHOD"]

RUN_KIND = "spg"
THRESHOLDS = ("spg_threshold_1h", "spg_threshold_1l", "spg_threshold_2h", "spg_threshold_2l", "spg_threshold_3h",
              "spg_threshold_3l")


@dataclass(kw_only=True)
class SPGConfig(PretrainConfig):
    """The CAM's options and SPG's (defaults: wsolevaluation's thresholds; branches of 512 channels)."""

    spg_threshold_1h: float = option(0.7, "B2's foreground seeds: the normalised class map above this")
    spg_threshold_1l: float = option(0.01, "B2's background seeds: the normalised class map below this")
    spg_threshold_2h: float = option(0.5, "B1's foreground seeds: B2's sigmoid above this")
    spg_threshold_2l: float = option(0.05, "B1's background seeds: B2's sigmoid below this")
    spg_threshold_3h: float = option(0.7, "C's foreground seeds: the mean of B1's and B2's sigmoids above this")
    spg_threshold_3l: float = option(0.1, "C's background seeds: that mean below this")
    spg_layers: tuple[str, ...] | None = option(None, "the two module paths branch B taps (default: the first block "
                                                      "of the second-last stage and that stage, as wsolevaluation's "
                                                      "ResNet-50; a stage of one block: the third-last and the "
                                                      "second-last stages)", nargs=2, metavar="MODULE")
    spg_width: int = option(512, "channels of the branches' hidden convolutions")

    def __post_init__(self):
        super().__post_init__()
        for name in THRESHOLDS:
            check_unit(name, getattr(self, name))
        check_positive("spg_width", self.spg_width)
        if self.spg_layers is not None and len(self.spg_layers) != 2:
            raise OptionError(f"spg_layers: give two module paths, got {len(self.spg_layers)}")

    @property
    def thresholds(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """((1h, 1l), (2h, 2l), (3h, 3l))."""
        v = [getattr(self, name) for name in THRESHOLDS]
        return (v[0], v[1]), (v[2], v[3]), (v[4], v[5])


def default_spg_taps(model: nn.Module) -> tuple[str, str]:
    """The first block of the second-last stage and that stage (wsolevaluation's ResNet-50 taps); when that stage
    is not a sequence of at least two blocks, the third-last and the second-last stages."""
    stages = stage_names(model)
    if len(stages) < 2:
        raise OptionError("spg_layers: the architecture lists fewer than two stages; give two module paths")
    stage = stages[-2]
    module = model.get_submodule(stage)
    blocks = [name for name, _ in module.named_children()] if isinstance(module, nn.Sequential) else []
    if len(blocks) >= 2:
        return f"{stage}.{blocks[0]}", stage
    if len(stages) < 3:
        raise OptionError("spg_layers: the architecture lists fewer than three stages; give two module paths")
    return stages[-3], stage


def _network(config: SPGConfig, num_classes: int, pretrained: bool) -> SPGNetwork:
    classifier = build_classifier(config.arch, num_classes, pretrained and config.pretrained,
                                  config.encoder_weights if pretrained else None, config.input_size,
                                  config.resize_size)
    if not isinstance(classifier.get_classifier() if hasattr(classifier, "get_classifier") else None, nn.Linear):
        raise OptionError(f"arch: spg needs a classifier whose head is global pooling + a linear layer; {config.arch} "
                          f"has none")
    taps = tuple(config.spg_layers) if config.spg_layers else default_spg_taps(classifier)
    shapes, features = feature_shapes(classifier, config.input_size, taps, "spg", config.arch)
    return SPGNetwork(classifier, taps, (shapes[0][1], shapes[1][1]), features[1], config.spg_width)


def build_spg_network(config: SPGConfig, num_classes: int, weights: dict | None = None) -> SPGNetwork:
    """The SPG network of ``config``, random weights (an :class:`~tedloc.errors.OptionError` for a backbone or
    ``spg_layers`` it cannot use)."""
    return _network(config, num_classes, pretrained=False)


def spg_reference(config: SPGConfig, model: torch.nn.Module) -> Preprocessing | None:
    """The normalisation of the classifier's weights when they came from timm or a file (None: trained here)."""
    return classifier_reference(config, model.classifier)


class SPGTask(ClassifierTask):
    """Cross-entropy plus SPG's three seeded binary cross-entropies (seeds of the true class's map)."""

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict:
        """``loss`` (cross-entropy), ``spg_b2``, ``spg_b1``, ``spg_c`` (each a mean over its seeded pixels)."""
        images, labels = batch["image"], batch["label"]
        out = module(images.contiguous(memory_format=torch.channels_last), labels)
        terms = classification_terms(out["logits"], cross_entropy(out["logits"], labels), labels)
        terms.update(spg_loss_terms(out, tuple(images.shape[-2:]), self.config.thresholds))
        return terms


def train_spg(data, out, config: SPGConfig = SPGConfig(), resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) an SPG run; returns the per-epoch metrics."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND,
                            network=lambda c, n: _network(c, n, pretrained=True), task_type=SPGTask)


METHOD = register_method(Method(
    name="spg",
    description="SPG: a classifier with branches trained on seeds of its class map and of each other; its CAM "
                "localizes",
    run_kind=RUN_KIND,
    config=SPGConfig,
    train=train_spg,
    build=build_spg_network,
    localizer=CAMLocalizer,
    reference_preprocessing=spg_reference,
    search_space={**SHARED_SEARCH_SPACE, **{name: ("uniform", 0.0, 1.0) for name in THRESHOLDS}},
    summary=CAM.summary,
))
