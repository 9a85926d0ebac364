"""The CAM baseline: a classifier (encoder + global pooling + linear head) trained on image labels, whose
class activation map localizes. Its backbone is also TeD-Loc's offline encoder E and its true-class
CAMs TeD-Loc's pseudo-labels. ``tedloc train --method cam`` (or ``tedloc pretrain``)."""
from tedloc.methods.cam.localizer import CAMLocalizer, load_cam_run
from tedloc.methods.cam.train import RUN_KIND, ClassifierTask, PretrainConfig, evaluate_classifier, pretrain
from tedloc.methods.registry import Method, register_method

__all__ = ["CAMLocalizer", "PretrainConfig", "pretrain", "evaluate_classifier", "ClassifierTask", "METHOD"]


def _summary(history: list[dict]) -> str:
    last = history[-1]
    text = f"{len(history)} epochs, last val top-1 {last['val_top1']:.2f}, top-5 {last['val_top5']:.2f}"
    if any(row.get("val_MaxBoxAcc") is not None for row in history):  # a localization selection
        best = max(range(len(history)), key=lambda i: (history[i].get("val_MaxBoxAcc") or 0, -i))
        text += f"; selected epoch {best + 1} (val MaxBoxAcc {history[best]['val_MaxBoxAcc']:.2f})"
    return text


METHOD = register_method(Method(
    name="cam",
    description="train a classifier (encoder + pooling + linear head); its CAM localizes",
    run_kind=RUN_KIND,
    config=PretrainConfig,
    train=pretrain,
    load=load_cam_run,
    option_help={
        "arch": {"help": "timm name (tedloc_resnet_tiny, resnet18, vit_tiny_patch16_224, ...)"},
        "resize_size": {"help": "train resize before the random crop (default 256/224 of the input size)"},
        "lr_step": {"help": "decay the LR every N epochs"},
        "optimizer": {"choices": ("sgd", "adamw"), "help": "SGD with momentum, or AdamW (momentum unused; ViTs "
                                                           "from scratch train far better with it)"},
        "workers": {"help": "data loader processes"},
        "pretrained": {"help": "start from timm's weights (network or cache)"},
        "encoder_weights": {"help": "start from a local weight file (no download)"},
        "batch_size": {"help": "images per process and step (with torchrun, the global batch is N times this)"},
        "selection": {"metavar": "{last,loc,pseudo:FILE}",
                      "help": "the model kept and its threshold: the last epoch (threshold on val GT boxes if any), "
                              "or the epoch of best val CAM MaxBoxAcc against the GT boxes (loc) or against val "
                              "pseudo-boxes (pseudo:FILE: no GT box used)"},
        "interval": {"help": "CAM threshold interval of the validation"},
    },
    summary=_summary,
))
