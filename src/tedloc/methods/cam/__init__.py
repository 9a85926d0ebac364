"""The CAM baseline: a classifier (encoder + global pooling + linear head) trained on image labels, whose
class activation map localizes. Its backbone is also TeD-Loc's offline encoder E and its true-class
CAMs TeD-Loc's pseudo-labels. ``tedloc train --method cam`` (or ``tedloc pretrain``)."""
from tedloc.methods.cam.localizer import CAMLocalizer, build_cam_network, classifier_reference
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
    build=build_cam_network,
    localizer=CAMLocalizer,
    reference_preprocessing=classifier_reference,
    summary=_summary,
))
