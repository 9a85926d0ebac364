"""ADL (Attention-based Dropout Layer; Choe & Shim, CVPR 2019) as wsolevaluation trains it: the CAM's classifier
with ADL layers after chosen blocks (:mod:`~tedloc.methods.adl.layer`), active in training only; it localizes
with its CAM. ``tedloc train --method adl``. See docs/zoo/wsolevaluation.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tedloc.methods.base import option
from tedloc.methods.cam import METHOD as CAM
from tedloc.methods.cam.localizer import CAMLocalizer, build_cam_network, classifier_reference
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.cam_variants import batch_rng, check_unit
from tedloc.methods.adl.layer import ADL, default_adl_layers, drop_mask, importance_map, insert_adl
from tedloc.models.classifier import build_classifier
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.utils.device import Runtime

__all__ = ["ADLConfig", "ADLTask", "build_adl_network", "train_adl", "ADL", "drop_mask", "importance_map",
           "default_adl_layers", "insert_adl", "METHOD"]

RUN_KIND = "adl"


@dataclass(kw_only=True)
class ADLConfig(PretrainConfig):
    """The CAM's options and ADL's (defaults: wsolevaluation's ``adl_drop_rate`` 0.75, ``adl_threshold`` 0.9)."""

    adl_drop_rate: float = option(0.75, "probability that a pass uses the drop mask (else the importance map)")
    adl_threshold: float = option(0.9, "drop where the attention is at least this fraction of its maximum")
    adl_layers: tuple[str, ...] | None = option(None, "module paths after which ADL applies (default: after the "
                                                      "first block of the second-last stage and the first and "
                                                      "last block of the last stage, wsolevaluation's ResNet-50 "
                                                      "placement)", nargs="+", metavar="MODULE")

    def __post_init__(self):
        super().__post_init__()
        check_unit("adl_drop_rate", self.adl_drop_rate)
        check_unit("adl_threshold", self.adl_threshold)


def build_adl_network(config: ADLConfig, num_classes: int, weights: dict | None = None) -> torch.nn.Module:
    """The CAM's classifier of ``config`` with its ADL layers, random weights."""
    return _with_adl(build_cam_network(config, num_classes), config)


def _trained_network(config: ADLConfig, num_classes: int) -> torch.nn.Module:
    """The network a run starts from: the classifier with timm's or a file's weights when asked, and its ADL."""
    return _with_adl(build_classifier(config.arch, num_classes, config.pretrained, config.encoder_weights,
                                      config.input_size, config.resize_size), config)


def _with_adl(model: torch.nn.Module, config: ADLConfig) -> torch.nn.Module:
    layers = tuple(config.adl_layers) if config.adl_layers else default_adl_layers(model)
    insert_adl(model, layers, config.adl_drop_rate, config.adl_threshold, config.arch)
    return model


class ADLTask(ClassifierTask):
    """Cross-entropy, the ADL layers' per-pass draws keyed by (seed, epoch, the batch's sample indices)."""

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict:
        """The CAM's loss, after seeding the ADL layers' generator for this batch."""
        generator = torch.Generator().manual_seed(int(batch_rng(self.config.seed, epoch, batch["index"])
                                                      .integers(2 ** 62)))
        for layer in self.model.adl:
            layer.generator = generator
        return super().loss_terms(module, batch, epoch)


def train_adl(data, out, config: ADLConfig = ADLConfig(), resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) an ADL run; returns the per-epoch metrics."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND, network=_trained_network,
                            task_type=ADLTask)


METHOD = register_method(Method(
    name="adl",
    description="ADL: a classifier with attention-based dropout layers in training; its CAM localizes",
    run_kind=RUN_KIND,
    config=ADLConfig,
    train=train_adl,
    build=build_adl_network,
    localizer=CAMLocalizer,
    reference_preprocessing=classifier_reference,
    search_space={**SHARED_SEARCH_SPACE, "adl_drop_rate": ("uniform", 0.0, 1.0),
                  "adl_threshold": ("uniform", 0.0, 1.0)},
    summary=CAM.summary,
))
