"""Training engines: classifier pretraining (and, later, the localization methods); checkpoints."""
from tedloc.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from tedloc.engine.pretrain import PretrainConfig, build_classifier, evaluate_classifier, pretrain

__all__ = ["PretrainConfig", "pretrain", "build_classifier", "evaluate_classifier", "save_checkpoint",
           "load_checkpoint", "latest_checkpoint"]
