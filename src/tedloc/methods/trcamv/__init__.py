"""TrCAM-V (thesis app. II): video WSOL from video tags: a frozen ViT, a class-token classifier, a decoder on the
last block's attention trained on Otsu seeds of per-frame pseudo-labels (CLIP-ES, CLIPSeg or any map source) with
the partial cross-entropy, the absolute size loss (log-barrier) and the CRF loss. ``tedloc cams`` on the train
frames, then ``tedloc train --method trcamv``."""
from tedloc.methods.base import encoder_reference
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method
from tedloc.methods.trcamv.localizer import TrCAMVLocalizer, build_trcamv_network
from tedloc.methods.trcamv.train import RUN_KIND, TrCAMVTrainConfig, build_trcamv, train_trcamv

__all__ = ["TrCAMVLocalizer", "TrCAMVTrainConfig", "train_trcamv", "build_trcamv", "METHOD"]


def _summary(history: list[dict]) -> str:
    last = history[-1]
    if last.get("val_MaxBoxAcc") is None or last.get("val_CL@1") is None:
        return f"{len(history)} epochs; last seed loss {last['loss_seed']:.4f}"
    return f"{len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}, MaxBoxAcc {last['val_MaxBoxAcc']:.2f}"


def _train(data, out, config: TrCAMVTrainConfig, resume: bool = True, *, runtime, cams) -> list[dict]:
    return train_trcamv(data, out, cams, config, resume=resume, runtime=runtime)


METHOD = register_method(Method(
    name="trcamv",
    description="train TrCAM-V on videos (frozen ViT, class-token classifier, attention decoder on Otsu seeds + "
                "size and CRF losses)",
    run_kind=RUN_KIND,
    config=TrCAMVTrainConfig,
    train=_train,
    build=build_trcamv_network,
    localizer=TrCAMVLocalizer,
    epoch_module="head",  # the ViT is frozen: an epoch checkpoint holds the classifier and the decoder
    reference_preprocessing=encoder_reference,
    inputs={"cams": "map cache of the train frames (tedloc cams on the video dataset's train split)"},
    search_space={**SHARED_SEARCH_SPACE, "lambda_size": ("log", 1e-3, 0.1)},
    summary=_summary,
))
