"""Hide-and-Seek (HaS; Singh & Lee, ICCV 2017) as wsolevaluation trains it: the CAM's classifier trained on
images whose grid patches are hidden at random (:mod:`~tedloc.methods.has.augment`); it localizes with its CAM.
``tedloc train --method has``. See docs/zoo/wsolevaluation.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tedloc.methods.base import option
from tedloc.methods.cam import METHOD as CAM
from tedloc.methods.cam.localizer import CAMLocalizer, build_cam_network, classifier_reference
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.cam_variants import check_positive, check_unit, classification_terms, cross_entropy, keyed_rng
from tedloc.methods.has.augment import hidden_patches, hide_patches, patch_side
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.utils.device import Runtime

__all__ = ["HaSConfig", "HaSTask", "train_has", "hidden_patches", "hide_patches", "patch_side", "METHOD"]

RUN_KIND = "has"


@dataclass(kw_only=True)
class HaSConfig(PretrainConfig):
    """The CAM's options and Hide-and-Seek's (defaults: wsolevaluation's ``has_grid_size`` 4, ``has_drop_rate``
    0.5)."""

    has_grid_size: int = option(4, "side of the hidden patches in pixels (0: nothing hidden)")
    has_drop_rate: float = option(0.5, "probability that a patch is hidden, in [0, 1]")
    has_patch_area: float | None = option(None, "a patch's area as a fraction of the image's, in [0, 1] (the "
                                                "thesis' drop area; overrides has-grid-size: side = input size * "
                                                "sqrt(area))")

    def __post_init__(self):
        super().__post_init__()
        check_positive("has_grid_size", self.has_grid_size, allow_zero=True)
        check_unit("has_drop_rate", self.has_drop_rate)
        if self.has_patch_area is not None:
            check_unit("has_patch_area", self.has_patch_area)


class HaSTask(ClassifierTask):
    """Cross-entropy on images with hidden patches, drawn per image from (seed, epoch, sample index)."""

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict:
        """Cross-entropy of the hidden-patch images (and the batch's top-1, logged only)."""
        c = self.config
        images, labels = batch["image"], batch["label"]
        side = patch_side(c.has_grid_size, c.has_patch_area, images.shape[-1])
        rngs = [keyed_rng(c.seed, epoch, i) for i in batch["index"].tolist()]
        hidden = hide_patches(images, side, c.has_drop_rate, rngs)
        logits = module(hidden.contiguous(memory_format=torch.channels_last))
        return classification_terms(logits, cross_entropy(logits, labels), labels)


def train_has(data, out, config: HaSConfig = HaSConfig(), resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) a HaS run; returns the per-epoch metrics."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND, task_type=HaSTask)


METHOD = register_method(Method(
    name="has",
    description="Hide-and-Seek: a classifier trained on images with random grid patches hidden; its CAM localizes",
    run_kind=RUN_KIND,
    config=HaSConfig,
    train=train_has,
    build=build_cam_network,
    localizer=CAMLocalizer,
    reference_preprocessing=classifier_reference,
    search_space={**SHARED_SEARCH_SPACE, "has_drop_rate": ("uniform", 0.0, 1.0),
                  "has_patch_area": ("uniform", 0.0, 1.0)},
    summary=CAM.summary,
))
