"""SAT (Wu et al., ICCV 2023): a spatial-aware token whose attention to the patches gates the last blocks'
attention and is the localization map; trained with the cross-entropy of TS-CAM's semantic head, the batch area
loss (its area threshold: the thesis' search hyper-parameter) and the normalisation loss.
``tedloc train --method sat``. See docs/zoo/vit.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tedloc.engine import LossTerm
from tedloc.errors import OptionError
from tedloc.methods.base import option
from tedloc.methods.cam.localizer import classifier_reference
from tedloc.methods.cam.train import train_classifier
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.methods.vit_wsol import ViTWSOLConfig, ViTWSOLLocalizer, ViTWSOLTask, network_builder
from tedloc.models.sat import SATNetwork, batch_area_loss
from tedloc.utils.device import Runtime

__all__ = ["SATConfig", "SATTask", "SATLocalizer", "train_sat", "build_sat", "METHOD"]

RUN_KIND = "sat"


@dataclass(kw_only=True)
class SATConfig(ViTWSOLConfig):
    """SAT's options (defaults: the authors' DeiT-S on CUB: AdamW, learning rate 1e-4, weight decay 0.05, batch 256,
    30 epochs, stochastic depth 0.1, area threshold 0.25, the last 3 blocks gated)."""

    method_name = "SAT"

    batch_size: int = 256
    lr: float = 1e-4
    epochs: int = 30
    area_threshold: float = option(0.25, "the batch area loss's target mean area of the maps, in [0, 1] (the authors: "
                                         "0.25 on CUB, 0.35 on ILSVRC)")
    sat_blocks: int = option(3, "the last blocks whose attention the token gates and whose gates make the map")
    area_weight: float = option(1.0, "weight of the batch area loss (the authors: 1)")
    norm_weight: float = option(1.0, "weight of the normalisation loss (the authors: 1)")

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.area_threshold <= 1.0:
            raise OptionError(f"area_threshold must be in [0, 1], got {self.area_threshold}")
        if int(self.sat_blocks) < 1:
            raise OptionError(f"sat_blocks must be at least 1, got {self.sat_blocks}")
        for name in ("area_weight", "norm_weight"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)}")


class SATLocalizer(ViTWSOLLocalizer):
    """SAT at inference: maps ``sat`` (the token's, class-agnostic) and ``semantic`` (per class)."""


class SATTask(ViTWSOLTask):
    """Cross-entropy + batch area loss + normalisation loss; validated on the token's map."""

    localizer_type = SATLocalizer

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """The three losses (the area loss of this process's batch) and the batch's top-1 and mean area (logged)."""
        c = self.config
        logits, areas, norms = module(batch["image"])
        labels = batch["label"]
        n = len(labels)
        ce = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        return {"loss": LossTerm(ce, n),
                "area_loss": LossTerm(batch_area_loss(areas.float(), c.area_threshold) * n, n, weight=c.area_weight),
                "norm_loss": LossTerm(norms.float().sum(), n, weight=c.norm_weight),
                "area": LossTerm(areas.float().sum(), n, weight=0.0),
                "top1": LossTerm(100.0 * (logits.argmax(1) == labels).sum(), n, weight=0.0)}

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The classifier's columns and the training area and normalisation losses and mean area."""
        return {**super().row(train, val), "train_area_loss": train["area_loss"], "train_norm_loss": train["norm_loss"],
                "train_area": train["area"]}


def _network(vit, num_classes: int, config: SATConfig) -> SATNetwork:
    return SATNetwork(vit, num_classes, config.sat_blocks)


network_sat, build_sat = network_builder(_network)


def train_sat(data, out, config: SATConfig = None, resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) a SAT run; returns the per-epoch metrics."""
    return train_classifier(data, out, config or SATConfig(), resume, runtime=runtime, kind=RUN_KIND,
                            network=network_sat, task_type=SATTask)


METHOD = register_method(Method(
    name="sat",
    description="train SAT (a spatial-aware token gating a ViT's last blocks; area and normalisation losses)",
    run_kind=RUN_KIND,
    config=SATConfig,
    train=train_sat,
    build=build_sat,
    localizer=SATLocalizer,
    reference_preprocessing=classifier_reference,
    search_space={**SHARED_SEARCH_SPACE, "area_threshold": ("uniform", 0.0, 1.0)},
))
