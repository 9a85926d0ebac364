"""DiPS (thesis ch. 2): proposals from a frozen ViT's attention, scored by a classifier; a class-token classifier
f_c; a localization decoder f_l trained with the partial cross-entropy on pixel seeds and the dense CRF
loss. ``tedloc proposals`` then ``tedloc train --method dips``."""
from tedloc.methods.base import encoder_reference
from tedloc.methods.dips.localizer import DiPSLocalizer, build_dips_network
from tedloc.methods.dips.proposals import encoder_source, make_proposals
from tedloc.methods.dips.train import RUN_KIND, DiPSTrainConfig, build_dips, train_dips
from tedloc.methods.registry import SHARED_SEARCH_SPACE, Method, register_method

__all__ = ["DiPSLocalizer", "DiPSTrainConfig", "train_dips", "build_dips", "make_proposals", "encoder_source",
           "METHOD"]


def _summary(history: list[dict]) -> str:
    last = history[-1]
    if last.get("val_MaxBoxAcc") is None or last.get("val_CL@1") is None:
        return f"{len(history)} epochs; last seed loss {last['loss_seed']:.4f}"
    return f"{len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}, MaxBoxAcc {last['val_MaxBoxAcc']:.2f}"


def _train(data, out, config: DiPSTrainConfig, resume: bool = True, *, runtime, proposals) -> list[dict]:
    return train_dips(data, out, proposals, config, resume=resume, runtime=runtime)


METHOD = register_method(Method(
    name="dips",
    description="train DiPS (frozen ViT, class-token classifier, decoder on attention-proposal seeds + CRF)",
    run_kind=RUN_KIND,
    config=DiPSTrainConfig,
    train=_train,
    build=build_dips_network,
    localizer=DiPSLocalizer,
    epoch_module="decoder",  # the ViT and f_c are frozen: an epoch checkpoint holds f_l
    reference_preprocessing=encoder_reference,
    inputs={"proposals": "proposal cache of the train split (tedloc proposals), made with the same ViT"},
    search_space={**SHARED_SEARCH_SPACE, "lambda_seed": ("log", 1e-3, 1.0)},
    summary=_summary,
))
