"""TeD-Loc: a frozen encoder E, a trainable decoder and patch classifier g, frozen (QR-orthogonalised)
text anchors as class prototypes, three losses on CAM pseudo-labels. ``tedloc train --method tedloc``."""
from tedloc.methods.registry import Method, register_method
from tedloc.methods.tedloc.localizer import TeDLocLocalizer, load_tedloc_run
from tedloc.methods.tedloc.train import RUN_KIND, TeDLocTask, TeDLocTrainConfig, build_tedloc, train_tedloc

__all__ = ["TeDLocLocalizer", "TeDLocTrainConfig", "TeDLocTask", "train_tedloc", "build_tedloc", "METHOD"]


def _summary(history: list[dict]) -> str:
    last = history[-1]
    text = f"{len(history)} epochs; last val CL@1 {last['val_CL@1']:.2f}"
    return text + (f", MaxBoxAcc {last['val_MaxBoxAcc']:.2f}" if last.get("val_MaxBoxAcc") is not None else "")


def _train(data, out, config: TeDLocTrainConfig, resume: bool = True, runtime=None, *, anchors, cams) -> list[dict]:
    return train_tedloc(data, out, anchors, cams, config, resume=resume, runtime=runtime)


METHOD = register_method(Method(
    name="tedloc",
    description="train TeD-Loc (frozen encoder, decoder + patch classifier, text anchors)",
    run_kind=RUN_KIND,
    config=TeDLocTrainConfig,
    train=_train,
    load=load_tedloc_run,
    inputs={"anchors": "anchor file (tedloc anchors)", "cams": "map cache of the train split (tedloc cams)"},
    option_help={
        "encoder": {"help": "timm name of the frozen encoder E"},
        "encoder_run": {"help": "take E's weights from a `tedloc pretrain` run"},
        "encoder_weights": {"help": "or from a local weight file"},
        "pretrained": {"help": "or timm's weights (network or cache)"},
        "resize_size": {"help": "train resize before the random crop (default 256/224 of the input size)"},
        "logit": {"choices": ("dot", "cosine")},
        "lambdas": {"metavar": ("KD", "PCL", "ICL"), "help": "loss weights; 0 switches a term off"},
        "k": {"help": "FG and BG pseudo-labels per image per step"},
        "fg_pool": {"help": "FG pseudo-labels: drawn from this top share of the CAM region's locations"},
        "bg_pool": {"help": "BG pseudo-labels: drawn from this bottom share of the locations outside it"},
        "lr_step": {"help": "decay the LR every N epochs"},
        "selection": {"metavar": "{loc,pseudo:FILE,cls,last}",
                      "help": "model selection and the stored threshold: best val MaxBoxAcc against the GT boxes "
                              "(loc) or against val pseudo-boxes (pseudo:FILE, a `tedloc pseudo-boxes` file: no GT "
                              "box used), best val CL (cls), or the last epoch"},
        "feature_cache": {"help": "folder for E's features of fixed training views: computed once, then every "
                                  "epoch trains the decoder only (shared by runs of the same encoder)"},
        "cache_views": {"help": "training views per image in the cache"},
        "interval": {"help": "CAM threshold interval of the validation"},
        "workers": {"help": "data loader processes"},
        "batch_size": {"help": "images per process and step (with torchrun, the global batch is N times this)"},
    },
    summary=_summary,
))
