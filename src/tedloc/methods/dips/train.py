"""``tedloc train --method dips``: DiPS (thesis ch. 2, the journal version) on the training engine, in two stages.

1. **f_c**: the linear classifier on the frozen ViT's class tokens (last ``n_blocks`` blocks), trained
   with cross-entropy on the training views into ``RUN/classifier/`` (its own checkpoints; the epoch
   of best val top-1 is kept), then frozen. ``classifier_dir`` names another folder, which runs of the
   same ViT and classifier settings share (the folder's configuration holds only those settings).
2. **f_l**: the localization decoder on the frozen ViT's patch tokens, trained into ``RUN/``. Every step,
   per image: one of its top-``top_k`` stored proposals is chosen uniformly (keyed by (seed, epoch,
   sample)), all its boxes go through the sample's resize, crop and flip; the chosen box's attention
   map (the ViT's, computed on the training view in the same forward pass) gives the pixel
   pseudo-labels (:func:`tedloc.pseudolabels.pixel_seeds.sample_pixel_labels`); the loss is
   ``lambda_seed`` x partial cross-entropy + ``lambda_crf`` x the dense CRF loss on the view's RGB.
   After every epoch: validation with GT boxes (or none, ``selection last``), a checkpoint (the
   decoder) and a ``metrics.csv`` row.

``RUN/model.{safetensors,json}`` holds the whole network (ViT, f_c, the selected f_l), its class names,
preprocessing and threshold: inference needs nothing else.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data import load_dataset
from tedloc.data.transforms import View
from tedloc.engine import LossTerm, RunFolder, Schedule, Trainer
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.errors import TedlocError
from tedloc.methods.base import (SELECTION_KEYS, TrainConfig, best_epoch, load_encoder, option, prepare_selection,
                                 selected_model_record, selection_criterion, validation_protocol)
from tedloc.methods.dips.localizer import DiPSLocalizer
from tedloc.methods.dips.proposals import check_proposals, encoder_source
from tedloc.models.dense_crf_loss import FILTERS, dense_crf_loss
from tedloc.models.dips import DiPSNet, partial_cross_entropy
from tedloc.pseudolabels.pixel_seeds import IGNORE, DiPSSamplerConfig, sample_pixel_labels
from tedloc.pseudolabels.proposal_cache import ProposalCache
from tedloc.pseudolabels.proposals import attention_map_set
from tedloc.pseudolabels.views import boxes_on_view
from tedloc.utils.device import Runtime
from tedloc.utils.keyed_random import keyed_uniform, sample_keys

__all__ = ["DiPSTrainConfig", "train_dips", "build_dips", "RUN_KIND", "choose_proposals", "train_class_token_probe",
           "classifier_schedule"]

RUN_KIND = "dips"  # model.json's kind of these runs
SELECTIONS = ("loc", "last")  # and pseudo:FILE (methods.base.selection_criterion)
PROPOSAL_STREAM = 0x6470  # keyed random numbers: which proposal a sample uses at an epoch
SEED_STREAM = 0x6473  # and where its pixel seeds fall
# what the classifier stage depends on (RUN/classifier's configuration): the decoder's settings may change
CLASSIFIER_FIELDS = ("encoder", "encoder_run", "encoder_weights", "pretrained", "input_size", "resize_size",
                     "n_blocks", "classifier_epochs", "classifier_lr", "classifier_lr_step", "batch_size", "momentum",
                     "seed")


@dataclass(kw_only=True)
class DiPSTrainConfig(TrainConfig):
    """Hyper-parameters of ``tedloc train --method dips`` (docs/DIPS.md gives the thesis' values; the shared ones:
    :class:`~tedloc.methods.base.TrainConfig`)."""

    encoder: str = option("tedloc_vit_tiny", "timm name of the frozen ViT, with a class token "
                                             "(vit_small_patch16_224.dino in the thesis)")
    encoder_run: str | None = option(None, "take the ViT's weights from a `tedloc pretrain` run")
    encoder_weights: str | None = option(None, "or from a local weight file")
    pretrained: bool = option(False, "or timm's weights (network or cache)")
    input_size: int = option(64, "side of the square input view in pixels")
    resize_size: int | None = option(None, "train resize before the random crop (default 256/224 of the input size)")
    n_blocks: int = option(4, "f_c reads the class tokens of the last N blocks")
    heads: tuple[int, ...] = option((0, 1, 2, 3), "attention heads of the map set, besides their mean (none: the "
                                                  "mean only)", nargs="*")
    top_k: int = option(5, "K: each step picks one of an image's K best proposals")
    min_size: float | None = option(None, "the proposals' minimum box size (a share of the image's area): a cache "
                                          "made with another is refused (none: any)")
    # the seeds' settings: DiPSSamplerConfig's, flat for the command line
    fg_count: int = option(DiPSSamplerConfig.fg_count, "n+: FG pixel seeds per image per step")
    bg_count: int = option(DiPSSamplerConfig.bg_count, "n-: BG pixel seeds per image per step")
    fg_pool: float = option(DiPSSamplerConfig.fg_pool, "FG seeds come from this top share of the chosen box's pixels")
    bg_pool: float = option(DiPSSamplerConfig.bg_pool, "BG seeds come from this bottom share of the pixels outside "
                                                       "every box")
    background: str = option(DiPSSamplerConfig.background, "BG pool outside every box (the thesis), the whole map "
                                                           "(DiPS's code), or the outer ring of --bg-border (tedloc's "
                                                           "boundary prior)", choices=("outside", "anywhere", "border"))
    bg_border: float = option(DiPSSamplerConfig.bg_border, "width of the ring of --background border, a share of the "
                                                           "side")
    dilation: int = option(DiPSSamplerConfig.dilation, "seeds are dilated by this odd square")
    lambda_seed: float = option(1.0, "weight of the partial cross-entropy")
    lambda_crf: float = option(2e-9, "weight of the dense CRF loss (0 switches it off; the thesis: 2e-9 at 224x224)")
    sigma_rgb: float = option(15.0, "the CRF loss's colour bandwidth (0-255 units)")
    sigma_xy: float = option(100.0, "the CRF loss's spatial bandwidth in pixels")
    crf_scale: float = option(1.0, "compute the CRF loss on a grid this much smaller")
    crf_gain: float = option(1.0, "multiply the CRF loss by this (the configs: DiPS's permutohedral lattice over the "
                                  "exact filter, measured; docs/DIPS.md)")
    crf_method: str = option("exact", "every pixel pair, or random Fourier features", choices=("exact", "rff"))
    classifier_epochs: int | None = option(None, "epochs of f_c (stage 1, RUN/classifier; default: --epochs)")
    classifier_lr: float = option(0.01, "learning rate of f_c")
    # stage 1's LR x0.1 every N epochs (its own: the sweep searches the decoder's)
    classifier_lr_step: int | None = option(None, "f_c's LR step, x0.1 every N epochs (default: a third of its "
                                                  "epochs rounded up, at least 4: two decays at most)")
    classifier_dir: str | None = option(None, "folder of stage 1 (default RUN/classifier); runs with the same ViT and "
                                              "f_c settings may share one")
    batch_size: int = 32
    nesterov: bool = option(True, "Nesterov momentum")
    weight_decay: float = 0.0
    lr_step: int = option(3, "decay f_l's LR x0.1 every N epochs")
    selection: str = option("loc", "the decoder of best val MaxBoxAcc against the GT boxes (loc) or against val "
                                   "pseudo-boxes (pseudo:FILE: no GT box used), or the last",
                            metavar="{loc,pseudo:FILE,last}")

    def __post_init__(self):
        self.heads = tuple(int(h) for h in self.heads)
        selection_criterion(self.selection, SELECTIONS)
        if self.crf_method not in FILTERS:
            raise TedlocError(f"crf_method must be one of {', '.join(FILTERS)}")
        if self.top_k < 1 or (self.classifier_epochs is not None and self.classifier_epochs < 1):
            raise TedlocError("top_k and classifier_epochs must be at least 1")
        if not 0 < self.crf_scale <= 1:
            raise TedlocError("crf_scale must be in (0, 1]")
        if not self.crf_gain > 0:
            raise TedlocError("crf_gain must be positive")
        if self.min_size is not None and not 0 <= self.min_size < 1:
            raise TedlocError("min_size must be in [0, 1)")
        if self.lambda_seed < 0 or self.lambda_crf < 0:
            raise TedlocError("lambda_seed and lambda_crf must be >= 0")
        if (self.classifier_lr_step is not None and self.classifier_lr_step < 1) or self.lr_step < 1:
            raise TedlocError("lr_step and classifier_lr_step must be at least 1")
        self.sampler()  # the seed settings are checked now, not at the first step

    def sampler(self) -> DiPSSamplerConfig:
        """The pixel pseudo-labels' settings."""
        try:
            return DiPSSamplerConfig(self.fg_count, self.bg_count, self.fg_pool, self.bg_pool, self.background,
                                     self.dilation, self.bg_border)
        except ValueError as e:
            raise TedlocError(str(e)) from None


def build_dips(config: DiPSTrainConfig, num_classes: int) -> DiPSNet:
    """The network of ``config``: the ViT loaded as the config says (frozen), new f_c and f_l; its preprocessing
    is the ViT's record with the config's input and resize sizes."""
    encoder = load_encoder(config.encoder, config.input_size, run=config.encoder_run,
                           weights=config.encoder_weights, pretrained=config.pretrained)
    return DiPSNet(encoder, num_classes, config.n_blocks, encoder.preprocessing.replace(resize_size=config.resize_size))


def choose_proposals(cache: ProposalCache, rows: list[int], views: torch.Tensor, keys: torch.Tensor, top_k: int,
                     size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample: one of its first ``min(top_k, stored)`` proposals, uniformly by its key. Returns the chosen
    box's mask and the union of those proposals' boxes on the view ``(B, H, W)`` bool, and the map index of
    the chosen box ``(B,)``."""
    u = keyed_uniform(keys, 1)[:, 0]
    chosen, union, maps = [], [], []
    for row, view, uniform in zip(rows, views, u.tolist()):
        found, _ = cache.get(row)
        found = found[:top_k]
        if not found:
            raise TedlocError(f"{cache.root}: image {cache.image_ids[row]} has no stored proposal")
        pick = min(int(uniform * len(found)), len(found) - 1)
        masks = boxes_on_view(np.array([p.box for p in found]), View.from_tensor(view), size)
        chosen.append(masks[pick])
        union.append(masks.any(dim=0))
        maps.append(found[pick].map_index)
    return torch.stack(chosen), torch.stack(union), torch.tensor(maps, dtype=torch.long)


class _ClassTokenModel(nn.Module):
    """f_c on the frozen ViT as one module (images -> logits), for the classifier stage's validation."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.classifier(self.net.class_tokens(images))


class ClassifierStage:
    """Stage 1 (an engine :class:`TrainingTask`): f_c with cross-entropy on the frozen ViT's class tokens (of any
    network with ``class_tokens(images)`` and ``classifier``: DiPS's, TrCAM-V's)."""

    def __init__(self, net: nn.Module, train_set, val_set, config):
        self.net, self.train_set, self.val_set, self.config = net, train_set, val_set, config

    def trainable(self) -> nn.Module:
        """f_c."""
        return self.net.classifier

    def train_dataset(self):
        """Training views."""
        return self.train_set

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """SGD with momentum, no weight decay (DINO's linear evaluation)."""
        return torch.optim.SGD(module.parameters(), lr=self.config.classifier_lr, momentum=self.config.momentum)

    def loss_terms(self, module: nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """Cross-entropy of the class tokens' logits."""
        logits = module(self.net.class_tokens(batch["image"]))
        loss = F.cross_entropy(logits.float(), batch["label"], reduction="sum")
        correct = (logits.argmax(dim=1) == batch["label"]).sum()
        n = len(batch["label"])
        return {"loss": LossTerm(loss, n), "top1": LossTerm(100.0 * correct.float(), n, 0.0)}

    def validate(self, runtime: Runtime) -> dict:
        """Top-1 / top-5 on the val split."""
        from tedloc.methods.cam.train import evaluate_classifier

        c = self.config
        return evaluate_classifier(_ClassTokenModel(self.net), self.val_set, c.batch_size, c.workers, runtime=runtime)

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        return {"train_loss": train["loss"], "train_top1": train["top1"], "val_top1": val["top1"],
                "val_top5": val["top5"], "val_loss": val["loss"]}


class DecoderStage:
    """Stage 2 (an engine :class:`TrainingTask`): f_l with the partial cross-entropy on pixel pseudo-labels
    from the stored proposals and the ViT's attention, plus the dense CRF loss."""

    host_keys = ("index", "view")

    def __init__(self, net: DiPSNet, train_set, proposals: ProposalCache, localizer: DiPSLocalizer, val_split,
                 config: DiPSTrainConfig):
        self.net, self.train_set, self.proposals, self.localizer = net, train_set, proposals, localizer
        self.val_split, self.config = val_split, config
        self.sampler = config.sampler()
        p = net.preprocessing
        self._mean = torch.tensor(p.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(p.std).view(1, 3, 1, 1)

    def trainable(self) -> nn.Module:
        """f_l (the ViT and f_c are frozen)."""
        return self.net.decoder

    def train_dataset(self):
        """Training views."""
        return self.train_set

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """SGD with Nesterov momentum (DiPS: no weight decay)."""
        c = self.config
        return torch.optim.SGD(module.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and
                               c.momentum > 0, weight_decay=c.weight_decay)

    def pixel_labels(self, batch: dict, attention: torch.Tensor, size: tuple[int, int], epoch: int) -> torch.Tensor:
        """The batch's pixel pseudo-labels ``(B, H, W)`` (1 FG, 0 BG, IGNORE) on the view grid ``size``."""
        c = self.config
        index = batch["index"]
        device = batch["label"].device
        with torch.autocast(device.type, enabled=False):
            keys = sample_keys(c.seed, epoch, index, stream=PROPOSAL_STREAM)
            chosen, union, which = choose_proposals(self.proposals, index.tolist(), batch["view"], keys, c.top_k, size)
            maps = attention_map_set(attention.float(), c.heads)
            maps = maps[torch.arange(len(which), device=maps.device), which.to(maps.device)]
            maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            seeds = sample_keys(c.seed, epoch, index, stream=SEED_STREAM).to(device)
            uniforms = keyed_uniform(seeds, 2 * size[0] * size[1])
            u_fg, u_bg = uniforms[:, :size[0] * size[1]], uniforms[:, size[0] * size[1]:]
            return sample_pixel_labels(maps, chosen.to(device), union.to(device), u_fg, u_bg, self.sampler)

    def rgb(self, images: torch.Tensor) -> torch.Tensor:
        """The views' RGB in [0, 255] (un-normalised), what the CRF's colour kernel compares."""
        return (images.float() * self._std.to(images.device) + self._mean.to(images.device)) * 255.0

    def loss_terms(self, module: nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """The partial cross-entropy (per labelled pixel) and the dense CRF loss (per image)."""
        c = self.config
        images = batch["image"]
        size = tuple(images.shape[-2:])
        out = self.net.vit(images, attention=True)
        labels = self.pixel_labels(batch, out.attention, size, epoch)
        seg = self.net.segment(out.patch_tokens, size, decoder=module)
        seed_sum, seed_count = partial_cross_entropy(seg, labels, IGNORE)
        n = len(labels)
        terms = {"seed": LossTerm(seed_sum, seed_count, c.lambda_seed)}
        if c.lambda_crf:
            probs = seg.float().softmax(dim=1)
            crf = c.crf_gain * dense_crf_loss(probs, self.rgb(images), c.sigma_rgb, c.sigma_xy, c.crf_scale,
                                              c.crf_method, seed=c.seed + epoch)
            terms["crf"] = LossTerm(crf * n, n, c.lambda_crf)
        empty = ((labels == 1).flatten(1).any(dim=1) == 0).sum()
        terms["no_fg_seeds"] = LossTerm(empty.float(), None, 0.0)
        return terms

    def validate(self, runtime: Runtime) -> dict:
        """Classification (f_c) and localization (GT boxes, or the pseudo-boxes of ``selection pseudo:FILE``) on
        the val split; nothing with ``selection last`` on a split without boxes."""
        from tedloc.eval.localizer_eval import evaluate_localizer

        if not self.val_split.has_boxes:
            return {}
        c = self.config
        return evaluate_localizer(self.localizer, self.val_split, validation_protocol(c), batch_size=c.batch_size,
                                  dist=runtime.dist)

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        c = self.config
        crf = train.get("crf")
        total = c.lambda_seed * train["seed"] + (c.lambda_crf * crf if crf is not None else 0.0)
        return {"loss_seed": train["seed"], "loss_crf": crf, "loss_total": total,
                "no_fg_seeds": int(train["no_fg_seeds"]), "val_CL@1": val.get("CL@1"),
                "val_MaxBoxAcc": val.get("MaxBoxAcc"), "val_MaxBoxAccV2": val.get("MaxBoxAccV2"),
                "val_threshold": val.get("threshold")}


def classifier_schedule(config) -> Schedule:
    """Stage 1's schedule: ``classifier_epochs`` (default: ``epochs``) at ``classifier_lr``, x0.1 every
    ``classifier_lr_step`` epochs (default: a third of its epochs rounded up, at least 4 as for 10 epochs, so at
    most two decays: its last epoch runs at 1/100 of the rate or more)."""
    epochs = config.classifier_epochs or config.epochs
    step = config.classifier_lr_step or max(4, math.ceil(epochs / 3))
    return replace(Schedule.of(config), epochs=epochs, lr=config.classifier_lr, lr_step=step, lr_gamma=0.1)


def train_class_token_probe(net: nn.Module, train_set, val_set, config, run: RunFolder, fields: tuple[str, ...],
                            kind: str, data: str, class_names: list[str], resume: bool, *, runtime: Runtime
                            ) -> tuple[list[dict], int]:
    """Stage 1 of DiPS and TrCAM-V: the class-token classifier trained into ``config.classifier_dir`` (default
    ``RUN/classifier``, a run of ``kind`` whose configuration is the config's ``fields``), its best val top-1
    epoch loaded into ``net.classifier``. Returns the stage's history and that epoch (0-based)."""
    stage1 = RunFolder(config.classifier_dir or run.path / "classifier")
    schedule1 = classifier_schedule(config)
    stage1_config = {k: v for k, v in asdict(config).items() if k in fields}  # with the epochs and step it runs
    stage1_config.update(classifier_epochs=schedule1.epochs, classifier_lr_step=schedule1.lr_step)
    stage1.start({"config": stage1_config, "data": data, "class_names": class_names, "kind": kind}, runtime)
    # a shared stage-1 folder is never trained again (other runs use its classifier): it always resumes
    history1 = Trainer(schedule1, runtime).fit(ClassifierStage(net, train_set, val_set, config), stage1,
                                               resume=resume or bool(config.classifier_dir),
                                               meta={"config": stage1_config})
    best1 = best_epoch(history1, "val_top1")
    net.classifier.load_state_dict(load_checkpoint(stage1.checkpoint(best1 + 1))[0])
    return history1, best1


def train_dips(data: str | os.PathLike, out: str | os.PathLike, proposals: str | os.PathLike,
               config: DiPSTrainConfig = DiPSTrainConfig(), resume: bool = True, *,
               runtime: Runtime) -> list[dict]:
    """Train (or resume) a DiPS run from the proposal cache of the train split; returns the decoder stage's
    per-epoch metrics (the classifier stage's are in ``RUN/classifier/metrics.csv``)."""
    run = RunFolder(out)
    dataset = load_dataset(data)
    if dataset.is_video:
        raise TedlocError(f"{data}: DiPS trains on image datasets; for a video dataset use --method trcamv (or cam)")
    for split in ("train", "val"):
        if split not in dataset.splits:
            raise TedlocError(f"{data}: DiPS needs a {split!r} split")
    train_split = dataset["train"]
    config, criterion, val_split = prepare_selection(config, SELECTIONS, dataset["val"])
    cache = ProposalCache(proposals, train_split.image_ids, shared=True)
    if not cache.complete:
        raise TedlocError(f"{proposals}: the proposal cache is incomplete; finish it with `tedloc proposals`")
    source = encoder_source(config.encoder_run, config.encoder_weights, config.pretrained)
    check_proposals(cache, config.encoder, source, config.heads, config.top_k, config.min_size)
    dist = runtime.dist
    torch.manual_seed(config.seed)
    net = build_dips(config, dataset.num_classes).to(runtime.device)  # bad settings fail before the folder is claimed
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()),
                "proposals": str(Path(proposals).resolve()), "class_names": dataset.class_names, "kind": RUN_KIND}
    run.start(resolved, runtime)
    dist.on_main(lambda: run.confirm("preprocessing", net.preprocessing.to_dict()))
    train_set = net.preprocessing.dataset(train_split, train=True, seed=config.seed)
    val_set = net.preprocessing.dataset(val_split)

    history1, best1 = train_class_token_probe(net, train_set, val_set, config, run, CLASSIFIER_FIELDS,
                                              "dips_classifier", resolved["data"], dataset.class_names, resume,
                                              runtime=runtime)
    for p in net.classifier.parameters():
        p.requires_grad_(False)

    localizer = DiPSLocalizer(net, dataset.class_names, runtime=runtime)
    task = DecoderStage(net, train_set, cache, localizer, val_split, config)
    history = Trainer(Schedule.of(config), runtime).fit(task, run, resume=resume,
                                                              meta={"config": asdict(config)})
    if dist.is_main:
        best = best_epoch(history, SELECTION_KEYS[criterion])
        net.decoder.load_state_dict(load_checkpoint(run.checkpoint(best + 1))[0])
        run.save_model(net, selected_model_record(
            RUN_KIND, config, dataset.class_names, net.preprocessing, SELECTIONS, history, best,
            history[best].get("val_threshold"), classifier_epoch=best1 + 1, classifier_history=history1,
            proposals={"path": resolved["proposals"], "settings": cache.settings, "k": cache.k}))
    return history
