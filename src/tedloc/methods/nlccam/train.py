"""``tedloc train --method nlccam``: the NL-CCAM classifier trained on image labels with cross-entropy, on the CAM's
loop (:func:`~tedloc.methods.cam.train.train_classifier`).

The authors' recipe (``train_cub.py``): Adam, the head at 10 times the rate of the backbone and its non-local
blocks (5e-4 and 5e-5), no weight decay, batches of 16, a polynomial decay over 100 epochs. Here: Adam (or SGD,
AdamW) with ``lr`` for the backbone and ``lr x head_lr_ratio`` for the head, decayed by the shared step schedule
(``lr_step``, ``lr_gamma``: the protocol's search space) instead of the polynomial one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tedloc.errors import OptionError
from tedloc.methods.base import option
from tedloc.methods.cam.train import ClassifierTask, PretrainConfig, train_classifier
from tedloc.methods.nlccam.combination import COMBINATIONS
from tedloc.methods.nlccam.localizer import NLCCAMLocalizer
from tedloc.methods.nlccam.network import build_nlccam_classifier
from tedloc.utils.device import Runtime

__all__ = ["NLCCAMConfig", "NLCCAMTask", "train", "build_nlccam_network", "RUN_KIND"]

RUN_KIND = "nlccam"
OPTIMIZERS = ("adam", "sgd", "adamw")


@dataclass(kw_only=True)
class NLCCAMConfig(PretrainConfig):
    """Hyper-parameters of NL-CCAM (defaults: the authors' where they are not the data's; the shared ones:
    :class:`~tedloc.methods.cam.train.PretrainConfig`)."""

    optimizer: str = option("adam", "Adam (the authors'), SGD with momentum, or AdamW", choices=OPTIMIZERS)
    lr: float = option(5e-5, "learning rate of the backbone and its non-local blocks (the authors: 5e-5)")
    head_lr_ratio: float = option(10.0, "the head's learning rate is lr times this (the authors: 10)")
    weight_decay: float = 0.0
    batch_size: int = 16
    nonlocal_stages: int | None = option(None, "a non-local block after each of the last N feature stages (default: "
                                               "every stage but the first, as the authors' VGG16)")
    combination: str = option("quadratic", "how the ranked classes' CAMs combine (the authors' functions)",
                              choices=COMBINATIONS)
    positive_fraction: float = option(0.5, "quadratic: the share of the ranked classes with positive weights (the "
                                           "authors: 100 of 200)")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.combination not in COMBINATIONS:
            raise OptionError(f"combination must be one of {', '.join(COMBINATIONS)}, got {self.combination!r}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise OptionError(f"positive_fraction must be in [0, 1], got {self.positive_fraction!r}")
        if not self.head_lr_ratio > 0:
            raise OptionError(f"head_lr_ratio must be > 0, got {self.head_lr_ratio!r}")
        if self.nonlocal_stages is not None and self.nonlocal_stages < 0:
            raise OptionError(f"nonlocal_stages must be >= 0 (or unset: every stage but the first), "
                              f"got {self.nonlocal_stages}")
        optimizer, self.optimizer = self.optimizer, "sgd"  # the base checks the rest
        super().__post_init__()
        self.optimizer = optimizer


class NLCCAMTask(ClassifierTask):
    """Cross-entropy training of the NL-CCAM classifier; its validation scores the combinational CAM."""

    localizer_type = NLCCAMLocalizer

    def make_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        """Two groups: the backbone with its non-local blocks at ``lr``, the head at ``lr x head_lr_ratio``."""
        c = self.config
        head = {id(p) for p in module.get_classifier().parameters()}
        groups = [{"params": [p for p in module.parameters() if id(p) not in head], "lr": c.lr, "lr_scale": 1.0},
                  {"params": list(module.get_classifier().parameters()), "lr": c.lr * c.head_lr_ratio,
                   "lr_scale": c.head_lr_ratio}]
        if c.optimizer == "adam":
            return torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay)


def build_nlccam_network(config: NLCCAMConfig, num_classes: int, weights: dict | None = None) -> torch.nn.Module:
    """The network of an NL-CCAM run's config, random weights (``Method.build``)."""
    return build_nlccam_classifier(config, num_classes)


def _network(config: NLCCAMConfig, num_classes: int) -> torch.nn.Module:
    return build_nlccam_classifier(config, num_classes, pretrained=True)


def train(data: str | os.PathLike, out: str | os.PathLike, config: NLCCAMConfig = NLCCAMConfig(), resume: bool = True,
          *, runtime: Runtime) -> list[dict]:
    """Train (or resume) an NL-CCAM run; returns the per-epoch metrics (a bad option or a backbone without
    feature stages fails before the run folder is made)."""
    return train_classifier(data, out, config, resume, runtime=runtime, kind=RUN_KIND, network=_network,
                            task_type=NLCCAMTask)
