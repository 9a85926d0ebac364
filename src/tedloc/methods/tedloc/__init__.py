"""TeD-Loc: a frozen encoder E, a trainable decoder and patch classifier g, frozen (QR-orthogonalised)
text anchors as class prototypes, three losses on CAM pseudo-labels. ``tedloc train --method tedloc``."""
from tedloc.methods.base import encoder_reference
from tedloc.methods.registry import Method, register_method
from tedloc.methods.tedloc.localizer import TeDLocLocalizer, build_tedloc_network
from tedloc.methods.tedloc.train import RUN_KIND, TeDLocTask, TeDLocTrainConfig, build_tedloc, train_tedloc

__all__ = ["TeDLocLocalizer", "TeDLocTrainConfig", "TeDLocTask", "train_tedloc", "build_tedloc", "METHOD"]


def _summary(history: list[dict]) -> str:
    last = history[-1]
    text = f"{len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}"
    return text + (f", MaxBoxAcc {last['val_MaxBoxAcc']:.2f}" if last.get("val_MaxBoxAcc") is not None else "")


def _train(data, out, config: TeDLocTrainConfig, resume: bool = True, *, runtime, anchors, cams) -> list[dict]:
    return train_tedloc(data, out, anchors, cams, config, resume=resume, runtime=runtime)


METHOD = register_method(Method(
    name="tedloc",
    description="train TeD-Loc (frozen encoder, decoder + patch classifier, text anchors)",
    run_kind=RUN_KIND,
    config=TeDLocTrainConfig,
    train=_train,
    build=build_tedloc_network,
    localizer=TeDLocLocalizer,
    epoch_module="head",  # E and the anchors are frozen: an epoch checkpoint holds the head
    reference_preprocessing=encoder_reference,
    inputs={"anchors": "anchor file (tedloc anchors)", "cams": "map cache of the train split (tedloc cams)"},
    summary=_summary,
))
