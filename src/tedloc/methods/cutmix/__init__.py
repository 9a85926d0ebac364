"""CutMix (Yun et al., ICCV 2019) as wsolevaluation trains it: the CAM's classifier trained on batches where a box
of another image is pasted in and the labels mix by area (:mod:`~tedloc.methods.cutmix.augment`); it localizes
with its CAM. ``tedloc train --method cutmix``. See docs/zoo/wsolevaluation.md."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tedloc.methods.base import option
from tedloc.methods.cam import METHOD as CAM
from tedloc.methods.cam.localizer import CAMLocalizer, build_cam_network, classifier_reference
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.cam_variants import batch_rng, check_positive, check_unit, classification_terms, cross_entropy
from tedloc.methods.cutmix.augment import CutMix, cutmix_batch, cutmix_box
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.utils.device import Runtime

__all__ = ["CutMixConfig", "CutMixTask", "train_cutmix", "CutMix", "cutmix_batch", "cutmix_box", "METHOD"]

RUN_KIND = "cutmix"


@dataclass(kw_only=True)
class CutMixConfig(PretrainConfig):
    """The CAM's options and CutMix's (defaults: wsolevaluation's ``cutmix_beta`` 1, ``cutmix_prob`` 1)."""

    cutmix_beta: float = option(1.0, "the Beta(beta, beta) prior of the kept area (0: no CutMix)")
    cutmix_prob: float = option(1.0, "probability that a batch is mixed, in [0, 1]")

    def __post_init__(self):
        super().__post_init__()
        check_positive("cutmix_beta", self.cutmix_beta, allow_zero=True)
        check_unit("cutmix_prob", self.cutmix_prob)


class CutMixTask(ClassifierTask):
    """Cross-entropy of mixed batches against both labels, weighted by area; draws keyed by (seed, epoch, the
    batch's sample indices)."""

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict:
        """``lam * CE(label) + (1 - lam) * CE(pasted image's label)`` per image (and the top-1, logged only)."""
        c = self.config
        labels = batch["label"]
        mix = cutmix_batch(batch["image"], labels, c.cutmix_beta, c.cutmix_prob, batch_rng(c.seed, epoch,
                                                                                           batch["index"]))
        logits = module(mix.images.contiguous(memory_format=torch.channels_last))
        losses = cross_entropy(logits, labels)
        if mix.applied:
            losses = mix.lam * losses + (1.0 - mix.lam) * cross_entropy(logits, mix.labels_b)
        return classification_terms(logits, losses, labels)


def train_cutmix(data, out, config: CutMixConfig = CutMixConfig(), resume: bool = True, *, runtime: Runtime
                 ) -> list[dict]:
    """Train (or resume) a CutMix run; returns the per-epoch metrics."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND, task_type=CutMixTask)


METHOD = register_method(Method(
    name="cutmix",
    description="CutMix: a classifier trained on batches with pasted boxes and area-mixed labels; its CAM localizes",
    run_kind=RUN_KIND,
    config=CutMixConfig,
    train=train_cutmix,
    build=build_cam_network,
    localizer=CAMLocalizer,
    reference_preprocessing=classifier_reference,
    search_space={**SHARED_SEARCH_SPACE, "cutmix_beta": ("log", 0.1, 10.0), "cutmix_prob": ("uniform", 0.0, 1.0)},
    summary=CAM.summary,
))
