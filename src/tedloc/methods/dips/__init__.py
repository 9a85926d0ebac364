"""DiPS (thesis ch. 2): proposals from a frozen ViT's attention, scored by a classifier; a class-token classifier
f_c; a localization decoder f_l trained with the partial cross-entropy on pixel seeds and the dense CRF
loss. ``tedloc proposals`` then ``tedloc train --method dips``."""
from tedloc.methods.dips.localizer import DiPSLocalizer, load_dips_run
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


def _train(data, out, config: DiPSTrainConfig, resume: bool = True, runtime=None, *, proposals) -> list[dict]:
    return train_dips(data, out, proposals, config, resume=resume, runtime=runtime)


METHOD = register_method(Method(
    name="dips",
    description="train DiPS (frozen ViT, class-token classifier, decoder on attention-proposal seeds + CRF)",
    run_kind=RUN_KIND,
    config=DiPSTrainConfig,
    train=_train,
    load=load_dips_run,
    inputs={"proposals": "proposal cache of the train split (tedloc proposals), made with the same ViT"},
    option_help={
        "encoder": {"help": "timm name of the frozen ViT (vit_small_patch16_224.dino in the thesis)"},
        "encoder_run": {"help": "take the ViT's weights from a `tedloc pretrain` run"},
        "encoder_weights": {"help": "or from a local weight file"},
        "pretrained": {"help": "or timm's weights (network or cache)"},
        "resize_size": {"help": "train resize before the random crop (default 256/224 of the input size)"},
        "n_blocks": {"help": "f_c reads the class tokens of the last N blocks"},
        "heads": {"nargs": "*", "help": "attention heads of the map set, besides their mean (none: the mean only)"},
        "top_k": {"help": "K: each step picks one of an image's K best proposals"},
        "fg_count": {"help": "n+: FG pixel seeds per image per step"},
        "bg_count": {"help": "n-: BG pixel seeds per image per step"},
        "fg_pool": {"help": "FG seeds come from this top share of the chosen box's pixels"},
        "bg_pool": {"help": "BG seeds come from this bottom share of the pixels outside every box"},
        "background": {"choices": ("outside", "anywhere"),
                       "help": "BG pool outside every box (the thesis) or the whole map (DiPS's code)"},
        "dilation": {"help": "seeds are dilated by this odd square"},
        "lambda_seed": {"help": "weight of the partial cross-entropy"},
        "lambda_crf": {"help": "weight of the dense CRF loss (0 switches it off; the thesis: 2e-9 at 224x224)"},
        "crf_scale": {"help": "compute the CRF loss on a grid this much smaller"},
        "crf_method": {"choices": ("exact", "rff"), "help": "every pixel pair, or random Fourier features"},
        "classifier_epochs": {"help": "epochs of f_c (stage 1, RUN/classifier)"},
        "classifier_lr": {"help": "learning rate of f_c"},
        "classifier_dir": {"help": "folder of stage 1 (default RUN/classifier); runs with the same ViT and f_c "
                                   "settings may share one"},
        "lr_step": {"help": "decay the LR every N epochs (both stages)"},
        "selection": {"metavar": "{loc,pseudo:FILE,last}",
                      "help": "the decoder of best val MaxBoxAcc against the GT boxes (loc) or against val "
                              "pseudo-boxes (pseudo:FILE: no GT box used), or the last"},
        "interval": {"help": "threshold interval of the validation"},
        "workers": {"help": "data loader processes"},
        "batch_size": {"help": "images per process and step (with torchrun, the global batch is N times this)"},
    },
    search_space={**SHARED_SEARCH_SPACE, "lambda_seed": ("log", 1e-3, 1.0)},
    summary=_summary,
))
