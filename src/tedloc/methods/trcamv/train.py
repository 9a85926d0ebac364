"""``tedloc train --method trcamv``: TrCAM-V (thesis app. II) on a video dataset, through the training engine.

1. **Classifier** (``classifier probe``, the public code): DiPS's linear probe on the frozen ViT's class tokens of
   the last ``n_blocks`` blocks, trained with cross-entropy on frames drawn from the train shots into
   ``RUN/classifier/`` (the epoch of best val top-1 is kept), then frozen. ``classifier joint`` (the thesis' eq.
   A II-5) trains it with the decoder instead, ``lambda_cls`` x cross-entropy on the video tags.
2. **Localization head**: every step, each shot gives a frame (keyed by seed, epoch and sample); its pseudo-label
   map (a map cache of every train frame: ``tedloc cams`` with any map source, CLIP-ES or CLIPSeg with weights)
   goes through the frame's crop and flip; :mod:`tedloc.pseudolabels.otsu_seeds` draws the FG/BG seeds; the loss is
   ``lambda_seed`` x the partial cross-entropy + ``lambda_size`` x the absolute size loss with the log-barrier
   (:mod:`tedloc.models.size_loss`; its ``t`` follows the epoch, so a resumed run continues the schedule, and each
   epoch's ``t`` is in ``metrics.csv``) + ``lambda_crf`` x the dense CRF loss on the frame's RGB.
   After every epoch: validation on the val frames (MaxBoxAcc against their GT boxes, which is the public code's
   pooled val CorLoc, or against pseudo-boxes with ``selection pseudo:FILE``, or none with ``selection last``),
   a checkpoint of the head and a ``metrics.csv`` row.

``RUN/model.{safetensors,json}`` holds the whole network, its class names, preprocessing and threshold.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data import load_dataset
from tedloc.data.video import frames_split
from tedloc.engine import LossTerm, RunFolder, Schedule, Trainer
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.errors import TedlocError
from tedloc.methods.base import (SELECTION_KEYS, TrainConfig, best_epoch, load_encoder, option, prepare_selection,
                                 selected_model_record, selection_criterion, validation_protocol)
from tedloc.methods.dips.train import CLASSIFIER_FIELDS, train_class_token_probe
from tedloc.methods.trcamv.localizer import TrCAMVLocalizer
from tedloc.models.dense_crf_loss import FILTERS, dense_crf_loss
from tedloc.models.dips import partial_cross_entropy
from tedloc.models.size_loss import LogBarrierSchedule, absolute_size_loss
from tedloc.models.trcamv import TrCAMVNet
from tedloc.pseudolabels.map_cache import MapCache
from tedloc.pseudolabels.otsu_seeds import ROI_METHODS, OtsuSeederConfig, sample_otsu_seeds
from tedloc.pseudolabels.pixel_seeds import IGNORE
from tedloc.pseudolabels.views import maps_on_grid
from tedloc.utils.device import Runtime
from tedloc.utils.keyed_random import keyed_uniform, sample_keys

__all__ = ["TrCAMVTrainConfig", "train_trcamv", "build_trcamv", "RUN_KIND"]

RUN_KIND = "trcamv"
SELECTIONS = ("loc", "last")  # and pseudo:FILE (methods.base.selection_criterion)
SEED_STREAM = 0x7463  # keyed random numbers: where a sample's pixel seeds fall
CLASSIFIERS = ("probe", "joint")


@dataclass(kw_only=True)
class TrCAMVTrainConfig(TrainConfig):
    """Hyper-parameters of ``tedloc train --method trcamv`` (docs/VIDEO.md gives the papers' values and the code's;
    the shared ones: :class:`~tedloc.methods.base.TrainConfig`)."""

    encoder: str = option("tedloc_vit_tiny", "timm name of the frozen ViT, with a class token "
                                             "(vit_small_patch16_224.dino in the paper)")
    encoder_run: str | None = option(None, "take the ViT's weights from a `tedloc pretrain` run")
    encoder_weights: str | None = option(None, "or from a local weight file")
    pretrained: bool = option(False, "or timm's weights (network or cache)")
    input_size: int = option(64, "side of the square input view in pixels (224 in the paper)")
    resize_size: int | None = option(None, "train resize before the random crop (default 256/224 of the input size)")
    n_blocks: int = option(4, "the classifier reads the class tokens of the last N blocks")
    classifier: str = option("probe", "a linear probe trained first, then frozen (the code), or trained jointly with "
                                      "the decoder (the thesis)", choices=CLASSIFIERS)
    lambda_cls: float = option(1.0, "weight of the classifier's cross-entropy with classifier joint")
    # the seeder's settings: OtsuSeederConfig's, flat for the command line
    fg_count: int = option(OtsuSeederConfig.fg_count, "FG pixel seeds per frame per step")
    bg_count: int = option(OtsuSeederConfig.bg_count, "BG pixel seeds per frame per step")
    fg_pool: float = option(OtsuSeederConfig.fg_pool, "FG seeds come from this top share of the ROI's pixels")
    bg_pool: float = option(OtsuSeederConfig.bg_pool, "BG seeds come from this bottom share of all pixels")
    roi: str = option(OtsuSeederConfig.roi, "the Otsu ROI: its densest 4-connected region (the thesis) or all of it "
                                            "(the code's README)", choices=ROI_METHODS)
    min_roi_area: float = option(OtsuSeederConfig.min_roi_area, "a densest region smaller than this share of the "
                                                                "frame gives way to the largest one")
    dilation: int = option(OtsuSeederConfig.dilation, "seeds are dilated by this odd square")
    lambda_seed: float = option(1.0, "weight of the partial cross-entropy")
    lambda_size: float = option(0.01, "weight of the absolute size loss (0 switches it off)")
    barrier_t: float = option(1.0, "the log-barrier's t at the first epoch")
    barrier_factor: float = option(1.01, "t is multiplied by this after every epoch")
    barrier_max_t: float = option(10.0, "t's ceiling")
    lambda_crf: float = option(2e-9, "weight of the dense CRF loss (0 switches it off; the paper: 2e-9 at 224x224)")
    sigma_rgb: float = option(15.0, "the CRF loss's colour bandwidth (0-255 units)")
    sigma_xy: float = option(100.0, "the CRF loss's spatial bandwidth in pixels")
    crf_scale: float = option(1.0, "compute the CRF loss on a grid this much smaller")
    crf_method: str = option("exact", "every pixel pair, or random Fourier features", choices=("exact", "rff"))
    classifier_epochs: int = option(10, "epochs of the linear probe (stage 1, RUN/classifier)")
    classifier_lr: float = option(0.01, "learning rate of the linear probe")
    classifier_lr_step: int = option(4, "the linear probe's LR step (x0.1 every N epochs)")
    classifier_dir: str | None = option(None, "folder of stage 1 (default RUN/classifier); runs with the same ViT "
                                              "and probe settings may share one")
    epochs: int = 30
    batch_size: int = 32
    nesterov: bool = option(True, "Nesterov momentum")
    lr_step: int = option(15, "multiply the decoder's learning rate by lr-gamma every N epochs (the code: 15)")
    lr_gamma: float = option(0.9, "the decoder's learning-rate step factor (the code: 0.9)")
    selection: str = option("loc", "the head of best val MaxBoxAcc against the GT boxes (loc: the code's pooled val "
                                   "CorLoc) or against val pseudo-boxes (pseudo:FILE: no GT box used), or the last",
                            metavar="{loc,pseudo:FILE,last}")

    def __post_init__(self):
        selection_criterion(self.selection, SELECTIONS)
        if self.crf_method not in FILTERS:
            raise TedlocError(f"crf_method must be one of {', '.join(FILTERS)}")
        if self.classifier not in CLASSIFIERS:
            raise TedlocError(f"classifier must be one of {', '.join(CLASSIFIERS)}")
        if self.frames_per_shot < 1 or self.classifier_epochs < 1 or self.classifier_lr_step < 1 or self.lr_step < 1:
            raise TedlocError("frames_per_shot, classifier_epochs, lr_step and classifier_lr_step must be at least 1")
        if not 0 < self.crf_scale <= 1:
            raise TedlocError("crf_scale must be in (0, 1]")
        if min(self.lambda_seed, self.lambda_size, self.lambda_crf, self.lambda_cls) < 0:
            raise TedlocError("the loss weights must be >= 0")
        self.seeder()
        self.barrier()

    def seeder(self) -> OtsuSeederConfig:
        """The pixel seeds' settings."""
        try:
            return OtsuSeederConfig(self.fg_count, self.bg_count, self.fg_pool, self.bg_pool, self.roi,
                                    self.min_roi_area, self.dilation)
        except ValueError as e:
            raise TedlocError(str(e)) from None

    def barrier(self) -> LogBarrierSchedule:
        """The log-barrier's t schedule."""
        try:
            return LogBarrierSchedule(self.barrier_t, self.barrier_factor, self.barrier_max_t)
        except ValueError as e:
            raise TedlocError(str(e)) from None


def build_trcamv(config: TrCAMVTrainConfig, num_classes: int) -> TrCAMVNet:
    """The network of ``config``: the ViT loaded as the config says (frozen), a new classifier and decoder."""
    encoder = load_encoder(config.encoder, config.input_size, run=config.encoder_run,
                           weights=config.encoder_weights, pretrained=config.pretrained)
    return TrCAMVNet(encoder, num_classes, config.n_blocks,
                     encoder.preprocessing.replace(resize_size=config.resize_size))


class LocalizationStage:
    """Stage 2 (an engine :class:`TrainingTask`): the head with the partial cross-entropy on Otsu seeds of the
    frames' pseudo-label maps, the absolute size loss and the dense CRF loss (and the classifier's CE if joint)."""

    host_keys = ("index", "view", "shot", "frame")

    def __init__(self, net: TrCAMVNet, train_set, cache: MapCache, localizer: TrCAMVLocalizer, val_split,
                 config: TrCAMVTrainConfig):
        self.net, self.train_set, self.cache, self.localizer = net, train_set, cache, localizer
        self.val_split, self.config = val_split, config
        self.seeder, self.barrier = config.seeder(), config.barrier()
        p = net.preprocessing
        self._mean = torch.tensor(p.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(p.std).view(1, 3, 1, 1)

    def trainable(self) -> nn.Module:
        """The head (the classifier stays frozen unless ``classifier joint``)."""
        self.net.classifier.requires_grad_(self.config.classifier == "joint")
        return self.net.head

    def train_dataset(self):
        """Training views: frames drawn from the shots."""
        return self.train_set

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """SGD with Nesterov momentum and weight decay (the code's)."""
        c = self.config
        return torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=c.lr, momentum=c.momentum,
                               nesterov=c.nesterov and c.momentum > 0, weight_decay=c.weight_decay)

    def pixel_labels(self, batch: dict, size: tuple[int, int], epoch: int) -> torch.Tensor:
        """The batch's pixel seeds ``(B, H, W)`` (1 FG, 0 BG, IGNORE) on the view grid ``size``."""
        c = self.config
        device = batch["label"].device
        shots, frames = self.train_set.split.image_ids, self.train_set.shot_frames  # the dataset's listing, not a second
        rows = [self.cache.row(f"{shots[s]}/{frames(s)[f]}")
                for s, f in zip(batch["shot"].tolist(), batch["frame"].tolist())]
        with torch.autocast(device.type, enabled=False):
            maps = maps_on_grid(self.cache.get(rows), batch["view"], size).to(device)
            keys = sample_keys(c.seed, epoch, batch["index"], stream=SEED_STREAM).to(device)
            uniforms = keyed_uniform(keys, 2 * size[0] * size[1])
            n = size[0] * size[1]
            return sample_otsu_seeds(maps, uniforms[:, :n], uniforms[:, n:], self.seeder)

    def rgb(self, images: torch.Tensor) -> torch.Tensor:
        """The views' RGB in [0, 255] (un-normalised), what the CRF's colour kernel compares."""
        return (images.float() * self._std.to(images.device) + self._mean.to(images.device)) * 255.0

    def loss_terms(self, module: nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """The partial cross-entropy (per seeded pixel), the size loss and the CRF loss (per frame), and the
        classifier's cross-entropy with ``classifier joint``."""
        c = self.config
        images = batch["image"]
        size = tuple(images.shape[-2:])
        tokens, maps = self.net.features(images)
        logits, seg = module(tokens, maps)
        labels = self.pixel_labels(batch, size, epoch)
        seed_sum, seed_count = partial_cross_entropy(seg, labels, IGNORE)
        n = len(labels)
        terms = {"seed": LossTerm(seed_sum, seed_count, c.lambda_seed)}
        probs = seg.float().softmax(dim=1)
        t = self.barrier.t(epoch)
        terms["barrier_t"] = LossTerm(torch.tensor(t * n, device=probs.device), n, 0.0)  # logged: t of the epoch
        if c.lambda_size:
            terms["size"] = LossTerm(absolute_size_loss(probs, t) * n, n, c.lambda_size)
        if c.lambda_crf:
            crf = dense_crf_loss(probs, self.rgb(images), c.sigma_rgb, c.sigma_xy, c.crf_scale, c.crf_method,
                                 seed=c.seed + epoch)
            terms["crf"] = LossTerm(crf * n, n, c.lambda_crf)
        if c.classifier == "joint":
            terms["cls"] = LossTerm(F.cross_entropy(logits.float(), batch["label"], reduction="sum"), n, c.lambda_cls)
        empty = ((labels == 1).flatten(1).any(dim=1) == 0).sum()
        terms["no_fg_seeds"] = LossTerm(empty.float(), None, 0.0)
        return terms

    def validate(self, runtime: Runtime) -> dict:
        """Classification and localization on the val frames (GT boxes, or the pseudo-boxes of ``selection
        pseudo:FILE``); nothing with ``selection last`` on a split without boxes."""
        from tedloc.eval.localizer_eval import evaluate_localizer

        if not self.val_split.has_boxes:
            return {}
        c = self.config
        return evaluate_localizer(self.localizer, self.val_split, validation_protocol(c), batch_size=c.batch_size,
                                  dist=runtime.dist, masks=False)

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        c = self.config
        total = sum(weight * train[key] for key, weight in (("seed", c.lambda_seed), ("size", c.lambda_size),
                                                             ("crf", c.lambda_crf), ("cls", c.lambda_cls))
                    if train.get(key) is not None)
        return {"loss_seed": train["seed"], "loss_size": train.get("size"), "loss_crf": train.get("crf"),
                "loss_cls": train.get("cls"), "loss_total": total, "barrier_t": train["barrier_t"],
                "no_fg_seeds": int(train["no_fg_seeds"]),
                "val_CL@1": val.get("CL@1"), "val_MaxBoxAcc": val.get("MaxBoxAcc"),
                "val_MaxBoxAccV2": val.get("MaxBoxAccV2"), "val_threshold": val.get("threshold")}


def _open_cache(cams: str | os.PathLike, frames: list[str]) -> MapCache:
    """The map cache of the train frames (one line when it is another split's or incomplete)."""
    cache = MapCache(cams, shared=True)
    if cache.image_ids != frames:
        raise TedlocError(f"{cams}: the map cache does not list the train frames of this dataset (make it with "
                          f"`tedloc cams` on this dataset's train split: one map per frame)")
    if not cache.complete:
        raise TedlocError(f"{cams}: the map cache is incomplete; finish it with `tedloc cams`")
    return cache


def train_trcamv(data: str | os.PathLike, out: str | os.PathLike, cams: str | os.PathLike,
                 config: TrCAMVTrainConfig = TrCAMVTrainConfig(), resume: bool = True, *,
                 runtime: Runtime) -> list[dict]:
    """Train (or resume) a TrCAM-V run on the video dataset ``data`` with the map cache ``cams`` of its train
    frames; returns the localization stage's per-epoch metrics (the probe's are in ``RUN/classifier/``)."""
    run = RunFolder(out)
    dataset = load_dataset(data)
    if not dataset.is_video:
        raise TedlocError(f"{data}: TrCAM-V trains on a video dataset (kind: video; `tedloc data synthetic-video`, "
                          f"`tedloc data ytov1|ytov2`)")
    for split in ("train", "val"):
        if split not in dataset.splits:
            raise TedlocError(f"{data}: TrCAM-V needs a {split!r} split")
    train_split = dataset["train"]
    config, criterion, val_split = prepare_selection(config, SELECTIONS, dataset["val"])
    frames, _ = frames_split(train_split)
    cache = _open_cache(cams, frames.image_ids)
    dist = runtime.dist
    torch.manual_seed(config.seed)
    net = build_trcamv(config, dataset.num_classes).to(runtime.device)
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()), "cams": str(Path(cams).resolve()),
                "class_names": dataset.class_names, "kind": RUN_KIND}
    run.start(resolved, runtime)
    dist.on_main(lambda: run.confirm("preprocessing", net.preprocessing.to_dict()))
    train_set = net.preprocessing.dataset(train_split, train=True, seed=config.seed,
                                          frames_per_shot=config.frames_per_shot)
    val_set = net.preprocessing.dataset(val_split)

    history1: list[dict] = []
    best1 = -1
    if config.classifier == "probe":
        history1, best1 = train_class_token_probe(net, train_set, val_set, config, run,
                                                  CLASSIFIER_FIELDS + ("frames_per_shot",), "trcamv_classifier",
                                                  resolved["data"], dataset.class_names, resume, runtime=runtime)

    localizer = TrCAMVLocalizer(net, dataset.class_names, runtime=runtime)
    task = LocalizationStage(net, train_set, cache, localizer, val_split, config)
    history = Trainer(Schedule.of(config), runtime).fit(task, run, resume=resume, meta={"config": asdict(config)})
    if dist.is_main:
        best = best_epoch(history, SELECTION_KEYS[criterion])
        net.head.load_state_dict(load_checkpoint(run.checkpoint(best + 1))[0])
        run.save_model(net, selected_model_record(
            RUN_KIND, config, dataset.class_names, net.preprocessing, SELECTIONS, history, best,
            history[best].get("val_threshold"), classifier_epoch=best1 + 1 if best1 >= 0 else None,
            classifier_history=history1, cams={"path": resolved["cams"], "source": cache.source}))
    return history
