"""TS-CAM (Gao et al., ICCV 2021): a ViT whose patch tokens give class semantic maps through a 3x3 convolution
(their means are the logits, trained with the cross-entropy), coupled at inference with the class token's
attention averaged over heads and summed over blocks. ``tedloc train --method tscam``. See docs/zoo/vit.md."""
from __future__ import annotations

from dataclasses import dataclass

from tedloc.methods.cam.localizer import classifier_reference
from tedloc.methods.cam.train import train_classifier
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.methods.vit_wsol import ViTWSOLConfig, ViTWSOLLocalizer, ViTWSOLTask, network_builder
from tedloc.models.tscam import TSCAMNetwork
from tedloc.utils.device import Runtime

__all__ = ["TSCAMConfig", "TSCAMTask", "TSCAMLocalizer", "train_tscam", "build_tscam", "METHOD"]

RUN_KIND = "tscam"


@dataclass(kw_only=True)
class TSCAMConfig(ViTWSOLConfig):
    """TS-CAM's options (defaults: the authors' DeiT-S on CUB: AdamW, learning rate 5e-5, weight decay 0.05, batch
    128, 60 epochs, stochastic depth 0.1)."""

    method_name = "TS-CAM"


class TSCAMLocalizer(ViTWSOLLocalizer):
    """TS-CAM at inference: maps ``tscam`` (coupled, per class), ``attention``, ``semantic`` (per class)."""


class TSCAMTask(ViTWSOLTask):
    """The cross-entropy of the semantic maps' logits; validated on the coupled maps."""

    localizer_type = TSCAMLocalizer


network_tscam, build_tscam = network_builder(lambda vit, num_classes, config: TSCAMNetwork(vit, num_classes))


def train_tscam(data, out, config: TSCAMConfig = None, resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) a TS-CAM run; returns the per-epoch metrics."""
    return train_classifier(data, out, config or TSCAMConfig(), resume, runtime=runtime, kind=RUN_KIND,
                            network=network_tscam, task_type=TSCAMTask)


METHOD = register_method(Method(
    name="tscam",
    description="train TS-CAM (a ViT's semantic maps coupled with its class-token attention)",
    run_kind=RUN_KIND,
    config=TSCAMConfig,
    train=train_tscam,
    build=build_tscam,
    localizer=TSCAMLocalizer,
    reference_preprocessing=classifier_reference,
    search_space=dict(SHARED_SEARCH_SPACE),
))
