"""``tedloc train``: TeD-Loc training (only D and g train; E and the anchors are frozen).

Every step: the batch's cached pseudo-label maps go through each sample's crop and flip onto
the decoder's output grid, balanced FG/BG locations are drawn (keyed by (seed, epoch, sample):
the same draws on any device and in any number of processes), and
L = l1 L_KD + l2 P_CL + l3 I_CL is minimised with SGD by the engine
(:class:`tedloc.engine.Trainer`). After every epoch: validation (classification and
localization with GT boxes), a checkpoint (safetensors + JSON), a ``metrics.csv`` row; the model
selected by ``selection`` (``loc``: best val MaxBoxAcc, ``pseudo:FILE``: the same against val
pseudo-boxes, no GT box used; ``cls``: best val top-1; ``last``) is
written to ``RUN/model.{safetensors,json}`` with its encoder, anchors, class names and operating
threshold, so inference needs nothing else. Under ``torchrun`` DDP wraps the head only: E runs
outside it, under ``no_grad``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from tedloc.data import load_dataset
from tedloc.engine import LossTerm, RunFolder, Schedule, Trainer
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.feature_cache import CachedFeatureDataset, build_feature_cache
from tedloc.errors import TedlocError
from tedloc.methods.base import (SELECTION_KEYS, TrainConfig, best_epoch, load_encoder, option, prepare_selection,
                                 selected_model_record, validation_protocol)
from tedloc.methods.tedloc.localizer import TeDLocLocalizer
from tedloc.models.tedloc import TeDLoc, TeDLocLosses, tedloc_loss_terms
from tedloc.pseudolabels import PseudoLabelSampler, SamplerConfig, maps_on_grid
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.text import TextAnchors
from tedloc.utils.device import Runtime
from tedloc.utils.keyed_random import sample_keys

__all__ = ["TeDLocTrainConfig", "train_tedloc", "build_tedloc", "RUN_KIND"]

RUN_KIND = "tedloc"  # model.json's kind of these runs
SELECTIONS = ("loc", "cls", "last")  # and pseudo:FILE (methods.base.selection_criterion)

PSEUDO_LABEL_STREAM = 0x7073  # the pseudo-label draws' stream of keyed random numbers


@dataclass(kw_only=True)
class TeDLocTrainConfig(TrainConfig):
    """Hyper-parameters of ``tedloc train`` (the shared ones: :class:`~tedloc.methods.base.TrainConfig`)."""

    encoder: str = option("tedloc_resnet_tiny", "timm name of the frozen encoder E")
    encoder_run: str | None = option(None, "take E's weights from a `tedloc pretrain` run")
    encoder_weights: str | None = option(None, "or from a local weight file")
    pretrained: bool = option(False, "or timm's weights (network or cache)")
    input_size: int = option(64, "side of the square input view in pixels")
    resize_size: int | None = option(None, "train resize before the random crop (default 256/224 of the input size)")
    decoder_channels: tuple[int, ...] = option((128, 64), "channels of each x2 upsampling stage of the decoder")
    logit: str = option("dot", "class logits: dot product with the anchors, or cosine (times logit-scale)",
                        choices=("dot", "cosine"))
    logit_scale: float = option(1.0, "factor of the cosine logits")
    lambdas: tuple[float, float, float] = option((1.0, 1.0, 1.0), "loss weights; 0 switches a term off",
                                                 metavar=("KD", "PCL", "ICL"))
    k: int = option(10, "FG and BG pseudo-labels per image per step")
    fg_pool: float = option(0.2, "FG pseudo-labels: drawn from this top share of the CAM region's locations")
    bg_pool: float = option(0.2, "BG pseudo-labels: drawn from this bottom share of the locations outside it (of "
                                 "the ring's, with --bg-border)")
    bg_border: float = option(0.0, "boundary prior (tedloc's, not the paper's): the outer ring of this share of the "
                                   "map's side is background, below everything else for Otsu's split, and the only "
                                   "source of BG pseudo-labels; 0: none")
    feature_cache: str | None = option(None, "folder for E's features of fixed training views: computed once, then "
                                             "every epoch trains the decoder only (shared by runs of the same encoder)")
    cache_views: int = option(2, "training views per image in the cache")
    selection: str = option("loc", "model selection and the stored threshold: best val MaxBoxAcc against the GT "
                                   "boxes (loc) or against val pseudo-boxes (pseudo:FILE, a `tedloc pseudo-boxes` "
                                   "file: no GT box used), best val CL (cls), or the last epoch",
                            metavar="{loc,pseudo:FILE,cls,last}")


def build_tedloc(config: TeDLocTrainConfig, anchors: TextAnchors) -> TeDLoc:
    """The model of ``config`` with E loaded as the config says and the anchors as a frozen buffer; its
    preprocessing is E's record (normalisation of E's weights) with the config's input and resize sizes."""
    encoder = load_encoder(config.encoder, config.input_size, run=config.encoder_run, weights=config.encoder_weights,
                           pretrained=config.pretrained)
    preprocessing = encoder.preprocessing.replace(resize_size=config.resize_size)
    return TeDLoc(encoder, torch.from_numpy(anchors.vectors), tuple(config.decoder_channels), config.logit,
                  config.logit_scale, preprocessing)


class TeDLocTask:
    """TeD-Loc's three losses on pseudo-labels drawn from cached maps (an engine :class:`TrainingTask`).

    The cached maps are small (a CAM's 8x8 to 28x28): they go through each sample's view on the CPU,
    where the sample's index and view stay; the sampler then draws on the training device."""

    host_keys = ("index", "view")

    def __init__(self, model: TeDLoc, train_set: Dataset, cache: MapCache, localizer: TeDLocLocalizer, val_split,
                 config: TeDLocTrainConfig):
        self.model, self.train_set, self.cache, self.localizer = model, train_set, cache, localizer
        self.val_split, self.config = val_split, config
        self.weights = TeDLocLosses(*config.lambdas)
        self.sampler = PseudoLabelSampler(sampler_config(config))

    def trainable(self) -> torch.nn.Module:
        """The head (decoder D, projection and g); E and the anchors are frozen."""
        return self.model.head

    def train_dataset(self) -> Dataset:
        """Training views (images, or E's cached features of them)."""
        return self.train_set

    def make_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        """SGD with momentum and weight decay."""
        c = self.config
        return torch.optim.SGD(module.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _pseudo_labels(self, batch: dict, grid: tuple[int, int], epoch: int):
        index = batch["index"]
        with torch.autocast(batch["label"].device.type, enabled=False):  # the same labels in any precision
            maps = maps_on_grid(self.cache.get(index.numpy()), batch["view"], grid)
            keys = sample_keys(self.config.seed, epoch, index, stream=PSEUDO_LABEL_STREAM)
            return self.sampler(maps.to(batch["label"].device), keys=keys)

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """L_KD, P_CL and I_CL on the batch's pseudo-labels (their weights from ``lambdas``)."""
        features = batch["features"] if "features" in batch else self.model.forward_features(batch["image"])
        out = self.model.forward_head(features, head=module)
        pseudo = self._pseudo_labels(batch, tuple(out["fg"].shape[-2:]), epoch)
        weights = {"kd": self.weights.kd, "pcl": self.weights.pcl, "icl": self.weights.icl}
        terms = {name: LossTerm(total, count, weights[name])
                 for name, (total, count) in tedloc_loss_terms(self.model, out, batch["label"], pseudo,
                                                               self.weights).items()}
        terms["no_pseudo_labels"] = LossTerm(torch.tensor(float(pseudo.empty)), None, 0.0)
        return terms

    def validate(self, runtime: Runtime) -> dict:
        """Classification and localization (GT boxes) on the val split."""
        from tedloc.eval.localizer_eval import evaluate_localizer

        c = self.config
        return evaluate_localizer(self.localizer, self.val_split, validation_protocol(c), batch_size=c.batch_size,
                                  dist=runtime.dist)

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        w = self.weights
        total = w.kd * train["kd"] + w.pcl * train["pcl"] + w.icl * train["icl"]
        return {"loss_kd": train["kd"], "loss_pcl": train["pcl"], "loss_icl": train["icl"], "loss_total": total,
                "no_pseudo_labels": int(train["no_pseudo_labels"]), "val_CL@1": val.get("CL@1"),
                "val_MaxBoxAcc": val.get("MaxBoxAcc"), "val_MaxBoxAccV2": val.get("MaxBoxAccV2"),
                "val_threshold": val.get("threshold")}


def sampler_config(config: TeDLocTrainConfig) -> SamplerConfig:
    """The pseudo-label sampling of ``config`` (an OptionError naming the field when one is out of range)."""
    return SamplerConfig(k=config.k, fg_pool=config.fg_pool, bg_pool=config.bg_pool, bg_border=config.bg_border)


def train_tedloc(data: str | os.PathLike, out: str | os.PathLike, anchors_path: str | os.PathLike,
                 cams: str | os.PathLike, config: TeDLocTrainConfig = TeDLocTrainConfig(), resume: bool = True, *,
                 runtime: Runtime) -> list[dict]:
    """Train (or resume) a TeD-Loc run; returns the per-epoch metrics.

    ``runtime``: device and precision (default: the CPU in fp32). Under ``torchrun`` every process
    calls this; the first one writes the run folder, checkpoints and caches' metadata.
    """
    run = RunFolder(out)
    dataset = load_dataset(data)
    if dataset.is_video:
        raise TedlocError(f"{data}: TeD-Loc trains on image datasets; for a video dataset use --method trcamv (or cam)")
    config, criterion, val_split = prepare_selection(config, SELECTIONS, dataset["val"])
    sampler_config(config)  # refused before the run folder is written
    anchors = TextAnchors.load(anchors_path)
    if anchors.class_names != dataset.class_names:
        raise TedlocError(f"{anchors_path}: anchors of other classes than {data}")
    train_split = dataset["train"]
    cache = MapCache(cams, train_split.image_ids)
    if not cache.complete:
        raise TedlocError(f"{cams}: the map cache is incomplete; finish it with `tedloc cams`")
    dist = runtime.dist
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()),
                "anchors": str(Path(anchors_path).resolve()),
                "cams": str(Path(cams).resolve()), "class_names": dataset.class_names, "kind": RUN_KIND}
    run.start(resolved, runtime)
    torch.manual_seed(config.seed)
    model = build_tedloc(config, anchors).to(runtime.device)
    dist.on_main(lambda: run.confirm("preprocessing", model.preprocessing.to_dict()))
    if config.feature_cache:
        features = build_feature_cache(model.encoder, train_split, model.preprocessing, config.feature_cache,
                                       config.cache_views, config.seed, config.batch_size, config.workers,
                                       runtime=runtime)
        train_set = CachedFeatureDataset(features, train_split.labels, seed=config.seed)
    else:
        train_set = model.preprocessing.dataset(train_split, train=True, seed=config.seed)
    localizer = TeDLocLocalizer(model, dataset.class_names, runtime=runtime)
    task = TeDLocTask(model, train_set, cache, localizer, val_split, config)
    trainer = Trainer(Schedule.of(config, legacy_order_workers=config.workers > 0), runtime,
                      find_unused_parameters=not all(config.lambdas))
    history = trainer.fit(task, run, resume=resume, meta={"config": asdict(config)})
    if dist.is_main:
        best = best_epoch(history, SELECTION_KEYS[criterion])
        model.head.load_state_dict(load_checkpoint(run.checkpoint(best + 1))[0])
        run.save_model(model, selected_model_record(
            RUN_KIND, config, dataset.class_names, model.preprocessing, SELECTIONS, history, best,
            history[best]["val_threshold"], anchors=anchors.metadata()))
    return history
