"""Training programs: a method's model and losses, the engine's loop and the evaluation's validation.

``pretrain`` (a classifier: the CAM baseline and the offline encoder) and ``train_tedloc``.
"""
from tedloc.training.pretrain import PretrainConfig, evaluate_classifier, pretrain
from tedloc.training.tedloc import TeDLocTrainConfig, build_tedloc, train_tedloc

__all__ = ["PretrainConfig", "pretrain", "evaluate_classifier", "TeDLocTrainConfig", "train_tedloc", "build_tedloc"]
