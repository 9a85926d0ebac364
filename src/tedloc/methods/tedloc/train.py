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

from tedloc.cams.cache import MapCache
from tedloc.data import load_dataset
from tedloc.engine import Distributed, LossTerm, RunFolder, Schedule, Trainer
from tedloc.engine.checkpoint import load_checkpoint, save_checkpoint
from tedloc.engine.feature_cache import CachedFeatureDataset, build_feature_cache
from tedloc.errors import TedlocError
from tedloc.methods.base import (SELECTION_KEYS, best_epoch, config_from_dict, load_encoder, prepare_selection,
                                 threshold_source)
from tedloc.methods.tedloc.localizer import TeDLocLocalizer
from tedloc.models.tedloc import TeDLoc, TeDLocLosses, tedloc_loss_terms
from tedloc.pseudo import PseudoLabelSampler, SamplerConfig, maps_on_grid
from tedloc.text import TextAnchors
from tedloc.utils.device import Runtime
from tedloc.utils.keyed_random import sample_keys

__all__ = ["TeDLocTrainConfig", "train_tedloc", "build_tedloc", "RUN_KIND"]

RUN_KIND = "tedloc"  # model.json's kind of these runs
SELECTIONS = ("loc", "cls", "last")  # and pseudo:FILE (methods.base.selection_criterion)

PSEUDO_LABEL_STREAM = 0x7073  # the pseudo-label draws' stream of keyed random numbers


@dataclass
class TeDLocTrainConfig:
    """Hyper-parameters of ``tedloc train``."""

    encoder: str = "tedloc_resnet_tiny"
    encoder_run: str | None = None  # a `tedloc pretrain` run whose backbone becomes E
    encoder_weights: str | None = None  # or a local weight file
    pretrained: bool = False  # or timm's weights (network / cache)
    input_size: int = 64
    resize_size: int | None = None
    decoder_channels: tuple[int, ...] = (128, 64)
    logit: str = "dot"
    logit_scale: float = 1.0
    lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0)
    k: int = 10
    fg_pool: float = 0.2
    bg_pool: float = 0.2
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 4
    lr_gamma: float = 0.1
    feature_cache: str | None = None  # folder of E's features per view (built on first use, then reused)
    cache_views: int = 2  # fixed training views per image in the feature cache
    selection: str = "loc"
    interval: float = 0.01
    seed: int = 0
    workers: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TeDLocTrainConfig":
        """The config of a dict (e.g. read from JSON): unknown keys are ignored, lists become tuples."""
        return config_from_dict(cls, d)


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
        self.sampler = PseudoLabelSampler(SamplerConfig(k=config.k, fg_pool=config.fg_pool, bg_pool=config.bg_pool))

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

    def validate(self, runtime: Runtime, dist: Distributed) -> dict:
        """Classification and localization (GT boxes) on the val split."""
        from tedloc.eval.localizer_eval import evaluate_localizer

        c = self.config
        return evaluate_localizer(self.localizer, self.val_split, batch_size=c.batch_size, interval=c.interval,
                                  dist=dist)

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        w = self.weights
        total = w.kd * train["kd"] + w.pcl * train["pcl"] + w.icl * train["icl"]
        return {"loss_kd": train["kd"], "loss_pcl": train["pcl"], "loss_icl": train["icl"], "loss_total": total,
                "no_pseudo_labels": int(train["no_pseudo_labels"]), "val_CL@1": val.get("CL@1"),
                "val_MaxBoxAcc": val.get("MaxBoxAcc"), "val_MaxBoxAccV2": val.get("MaxBoxAccV2"),
                "val_threshold": val.get("threshold")}


def train_tedloc(data: str | os.PathLike, out: str | os.PathLike, anchors_path: str | os.PathLike,
                 cams: str | os.PathLike, config: TeDLocTrainConfig = TeDLocTrainConfig(), resume: bool = True,
                 runtime: Runtime | None = None) -> list[dict]:
    """Train (or resume) a TeD-Loc run; returns the per-epoch metrics.

    ``runtime``: device and precision (default: the CPU in fp32). Under ``torchrun`` every process
    calls this; the first one writes the run folder, checkpoints and caches' metadata.
    """
    run = RunFolder(out)
    dataset = load_dataset(data)
    config, criterion, val_split = prepare_selection(config, SELECTIONS, dataset["val"])
    anchors = TextAnchors.load(anchors_path)
    if anchors.class_names != dataset.class_names:
        raise TedlocError(f"{anchors_path}: anchors of other classes than {data}")
    train_split = dataset["train"]
    cache = MapCache(cams, train_split.image_ids)
    if not cache.complete:
        raise TedlocError(f"{cams}: the map cache is incomplete; finish it with `tedloc cams`")
    dist, runtime = Distributed.from_env(runtime or Runtime())
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()),
                "anchors": str(Path(anchors_path).resolve()),
                "cams": str(Path(cams).resolve()), "class_names": dataset.class_names, "kind": RUN_KIND}
    run.start(resolved, runtime, dist)
    torch.manual_seed(config.seed)
    model = build_tedloc(config, anchors).to(runtime.device)
    dist.on_main(lambda: run.confirm("preprocessing", model.preprocessing.to_dict()))
    if config.feature_cache:
        features = build_feature_cache(model.encoder, train_split, model.preprocessing, config.feature_cache,
                                       config.cache_views, config.seed, config.batch_size, config.workers,
                                       runtime=runtime, dist=dist)
        train_set = CachedFeatureDataset(features, train_split.labels, seed=config.seed)
    else:
        train_set = model.preprocessing.dataset(train_split, train=True, seed=config.seed)
    localizer = TeDLocLocalizer(model, dataset.class_names, runtime=runtime)
    task = TeDLocTask(model, train_set, cache, localizer, val_split, config)
    trainer = Trainer(Schedule.of(config, legacy_order_workers=config.workers > 0), runtime, dist,
                      find_unused_parameters=not all(config.lambdas))
    history = trainer.fit(task, run, resume=resume, meta={"config": asdict(config)})
    if dist.is_main:
        best = best_epoch(history, SELECTION_KEYS[criterion])
        model.head.load_state_dict(load_checkpoint(run.checkpoint(best + 1))[0])
        final = {"kind": RUN_KIND, "config": asdict(config), "class_names": dataset.class_names,
                 "selected_epoch": best + 1, "selection": config.selection,
                 "threshold_source": threshold_source(config.selection, SELECTIONS, history[best]["val_threshold"]),
                 "threshold": history[best]["val_threshold"], "anchors": anchors.metadata(), "history": history,
                 "preprocessing": model.preprocessing.to_dict()}
        save_checkpoint(run.model_stem, model, final)
    return history
