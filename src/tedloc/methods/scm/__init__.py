"""SCM (Bai et al., ECCV 2022): TS-CAM trained through spatial calibration modules that diffuse its attention map
over the patch grid along the semantic similarities; at inference the modules are left out.
``tedloc train --method scm``. See docs/zoo/vit.md."""
from __future__ import annotations

from dataclasses import dataclass

from tedloc.errors import OptionError
from tedloc.methods.base import option
from tedloc.methods.cam.localizer import classifier_reference
from tedloc.methods.cam.train import train_classifier
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.methods.vit_wsol import ViTWSOLConfig, ViTWSOLLocalizer, ViTWSOLTask, network_builder
from tedloc.models.scm import SCMNetwork
from tedloc.utils.device import Runtime

__all__ = ["SCMConfig", "SCMTask", "SCMLocalizer", "train_scm", "build_scm", "METHOD"]

RUN_KIND = "scm"


@dataclass(kw_only=True)
class SCMConfig(ViTWSOLConfig):
    """SCM's options (defaults: the authors' DeiT-S on CUB: AdamW, learning rate 5e-5, weight decay 0.05, batch 16,
    30 epochs, stochastic depth 0.1, 4 modules of 16 then 4 iterations)."""

    method_name = "SCM"

    batch_size: int = 16
    epochs: int = 30
    scm_layers: int = option(4, "spatial calibration modules (at least 1)")
    scm_first_iterations: int = option(16, "Newton-Schulz iterations of the first module's diffusion (at least 1)")
    scm_iterations: int = option(4, "Newton-Schulz iterations of the other modules' diffusion (at least 1)")
    scm_threshold: float = option(0.5, "initial value of each module's learnable threshold (> 0)")
    scm_rate: float = option(1.0, "initial value of each module's learnable diffusion rate")

    def __post_init__(self):
        super().__post_init__()
        for name in ("scm_layers", "scm_first_iterations", "scm_iterations"):
            if int(getattr(self, name)) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.scm_threshold > 0:
            raise OptionError(f"scm_threshold must be > 0, got {self.scm_threshold}")


class SCMLocalizer(ViTWSOLLocalizer):
    """SCM at inference: maps ``scm`` (normalised attention x semantic, per class), ``attention``, ``semantic``."""


class SCMTask(ViTWSOLTask):
    """The cross-entropy of the calibrated semantic maps' logits; validated on the coupled maps."""

    localizer_type = SCMLocalizer


def _network(vit, num_classes: int, config: SCMConfig) -> SCMNetwork:
    return SCMNetwork(vit, num_classes, config.scm_layers, config.scm_first_iterations, config.scm_iterations,
                      config.scm_threshold, config.scm_rate)


network_scm, build_scm = network_builder(_network)


def train_scm(data, out, config: SCMConfig = None, resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) an SCM run; returns the per-epoch metrics."""
    return train_classifier(data, out, config or SCMConfig(), resume, runtime=runtime, kind=RUN_KIND,
                            network=network_scm, task_type=SCMTask)


METHOD = register_method(Method(
    name="scm",
    description="train SCM (TS-CAM with spatial calibration modules diffusing its attention in training)",
    run_kind=RUN_KIND,
    config=SCMConfig,
    train=train_scm,
    build=build_scm,
    localizer=SCMLocalizer,
    reference_preprocessing=classifier_reference,
    search_space=dict(SHARED_SEARCH_SPACE),
))
