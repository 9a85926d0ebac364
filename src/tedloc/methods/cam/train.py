"""``tedloc pretrain``: train a classifier (encoder + global pooling + linear head) on a train split.

The offline world has no pretrained weights, so the encoder that TeD-Loc freezes and the CAM
baseline's classifier are trained here from scratch (or fine-tuned from local weights).
Schedule as in wsolevaluation: SGD with Nesterov momentum 0.9, weight decay, the learning rate
multiplied by ``lr_gamma`` every ``lr_step`` epochs; train transform = resize, random crop,
flip; validation top-1/top-5 after every epoch. The loop is the engine's
(:class:`tedloc.engine.Trainer`): any device and precision, one process or ``torchrun``.

The run folder (:class:`~tedloc.engine.RunFolder`) holds a checkpoint per epoch and the selected
epoch's model (``model.{safetensors,json}``, with its preprocessing record and the val threshold):
the last epoch (``selection last``, wsolevaluation's practice), or the epoch of best val MaxBoxAcc of
the CAM against the GT boxes (``loc``) or against val pseudo-boxes (``pseudo:FILE``: no GT box used,
the threshold estimated on those boxes too).

An interrupted run resumes from its last complete checkpoint and ends with the same weights
as an uninterrupted one: shuffling and augmentation depend only on (seed, epoch, index).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from tedloc.data import load_dataset
from tedloc.engine import LossTerm, RunFolder, Schedule, Trainer
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.distributed import shard_indices
from tedloc.errors import TedlocError
from tedloc.methods.base import (SELECTION_KEYS, TrainConfig, best_epoch, option, prepare_selection,
                                 selected_model_record, selection_criterion, validation_protocol)
from tedloc.models.classifier import build_classifier
from tedloc.utils.device import Runtime

__all__ = ["PretrainConfig", "pretrain", "train_classifier", "evaluate_classifier", "ClassifierTask", "RUN_KIND"]

RUN_KIND = "classifier"  # model.json's kind of these runs


OPTIMIZERS = ("sgd", "adamw")
SELECTIONS = ("last", "loc")  # and pseudo:FILE (methods.base.selection_criterion)


@dataclass(kw_only=True)
class PretrainConfig(TrainConfig):
    """Hyper-parameters of ``tedloc pretrain`` (defaults: the Tiny ImageNet / synthetic recipe; the shared ones:
    :class:`~tedloc.methods.base.TrainConfig`)."""

    arch: str = option("tedloc_resnet_tiny", "timm name (tedloc_resnet_tiny, resnet18, vit_tiny_patch16_224, ...)")
    input_size: int = option(64, "side of the square input view in pixels")
    resize_size: int | None = option(None, "train resize before the random crop (default 256/224 of the input size)")
    batch_size: int = 128
    lr: float = 0.1
    nesterov: bool = option(True, "Nesterov momentum")
    workers: int = 2
    pretrained: bool = option(False, "start from timm's weights (network or cache)")
    encoder_weights: str | None = option(None, "start from a local weight file (no download)")
    optimizer: str = option("sgd", "SGD with momentum, or AdamW (momentum unused; ViTs from scratch train far better "
                                   "with it)", choices=OPTIMIZERS)
    selection: str = option("last", "the model kept and its threshold: the last epoch (threshold on val GT boxes "
                                    "if any), or the epoch of best val CAM MaxBoxAcc against the GT boxes (loc) or "
                                    "against val pseudo-boxes (pseudo:FILE: no GT box used)",
                            metavar="{last,loc,pseudo:FILE}")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise TedlocError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        selection_criterion(self.selection, SELECTIONS)


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, dataset: Dataset, batch_size: int = 128, workers: int = 0,
                        *, runtime: Runtime) -> dict:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy; several processes share the batches and the
    sums are added in batch order (the same numbers as one process)."""
    model.eval()
    dist = runtime.dist
    indices = shard_indices(len(dataset), batch_size, dist.rank, dist.world_size)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=workers,
                        **runtime.loader_options())
    parts = []  # (batch number, [n, top-1, top-5, loss])
    for j, batch in enumerate(loader):
        batch = runtime.to_device(batch)
        with runtime.autocast():
            logits = model(batch["image"].contiguous(memory_format=torch.channels_last))
        labels = batch["label"]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        part = torch.stack([torch.tensor(len(labels), device=labels.device, dtype=torch.float64),
                            (top[:, 0] == labels).sum().double(), (top == labels[:, None]).any(dim=1).sum().double(),
                            F.cross_entropy(logits.float(), labels, reduction="sum").double()])
        parts.append((j * dist.world_size + dist.rank, part.cpu()))
    sums = torch.zeros(4, dtype=torch.float64)
    for _, part in sorted(p for rank_parts in dist.gather_objects(parts) for p in rank_parts):
        sums += part
    n, top1, top5, loss = sums.tolist()
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss / n}


class ClassifierTask:
    """Cross-entropy training of a classifier (the engine's :class:`~tedloc.engine.TrainingTask`); a subclass
    changes the loss (``loss_terms``) and the localizer its validation scores (``localizer_type``)."""

    localizer_type: type | None = None  # None: the CAM (CAMLocalizer)

    def __init__(self, model: torch.nn.Module, dataset, config: PretrainConfig, loc_split=None):
        self.model, self.config = model, config
        self.train_set = model.preprocessing.dataset(dataset["train"], train=True, seed=config.seed,
                                                     frames_per_shot=config.frames_per_shot)
        self.val_set = model.preprocessing.dataset(dataset["val"])
        self.loc_split, self.class_names = loc_split, dataset.class_names

    def trainable(self) -> torch.nn.Module:
        """The whole classifier trains."""
        return self.model

    def train_dataset(self) -> Dataset:
        """Training views of the train split."""
        return self.train_set

    def make_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        """SGD with (Nesterov) momentum and weight decay, or AdamW (``optimizer adamw``: ViTs from scratch)."""
        c = self.config
        if c.optimizer == "adamw":
            return torch.optim.AdamW(module.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(module.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                               weight_decay=c.weight_decay)

    def loss_terms(self, module: torch.nn.Module, batch: dict, epoch: int) -> dict[str, LossTerm]:
        """Cross-entropy (and the batch's top-1, logged only)."""
        logits = module(batch["image"].contiguous(memory_format=torch.channels_last))
        labels = batch["label"]
        n = len(labels)
        return {"loss": LossTerm(F.cross_entropy(logits.float(), labels, reduction="sum"), n),
                "top1": LossTerm(100.0 * (logits.argmax(1) == labels).sum(), n, weight=0.0)}

    def validate(self, runtime: Runtime) -> dict:
        """Top-1 / top-5 and loss on the val split; with a localization selection (``loc``, ``pseudo:FILE``) also
        the CAM's MaxBoxAcc and threshold against its boxes (GT-known maps)."""
        from tedloc.eval.localizer_eval import evaluate_localizer
        from tedloc.methods.cam.localizer import CAMLocalizer

        c = self.config
        out = evaluate_classifier(self.model, self.val_set, c.batch_size, c.workers, runtime=runtime)
        if self.loc_split is not None:
            localizer = (self.localizer_type or CAMLocalizer)(self.model, self.class_names, runtime=runtime)
            loc = evaluate_localizer(localizer, self.loc_split, validation_protocol(c), batch_size=c.batch_size,
                                     masks=False, dist=runtime.dist)
            out.update(MaxBoxAcc=loc["MaxBoxAcc"], threshold=loc["threshold"])
        return out

    def row(self, train: dict[str, float], val: dict) -> dict:
        """The epoch's ``metrics.csv`` columns."""
        row = {"train_loss": train["loss"], "train_top1": train["top1"], "val_top1": val["top1"],
               "val_top5": val["top5"], "val_loss": val["loss"]}
        if "MaxBoxAcc" in val:
            row.update(val_MaxBoxAcc=val["MaxBoxAcc"], val_threshold=val["threshold"])
        return row


def _val_threshold(model: torch.nn.Module, dataset, config: PretrainConfig, runtime: Runtime,
                   localizer_type: type | None = None) -> float | None:
    """The CAM threshold with the best val MaxBoxAcc (GT boxes, GT-known maps), stored for `tedloc predict`; None
    without boxes."""
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods.cam.localizer import CAMLocalizer

    val = dataset["val"]
    if not val.has_boxes:
        return None
    localizer = (localizer_type or CAMLocalizer)(model, dataset.class_names, runtime=runtime)
    # thresholds every 0.01 (the validation preset) whatever the config's interval: the threshold this has always stored
    return evaluate_localizer(localizer, val, "validation", batch_size=config.batch_size, masks=False,
                              dist=runtime.dist)["threshold"]


def pretrain(data: str | os.PathLike, out: str | os.PathLike, config: PretrainConfig = PretrainConfig(),
             resume: bool = True, *, runtime: Runtime) -> list[dict]:
    """Train (or resume) a classifier run; returns the per-epoch metrics.

    ``runtime``: device and precision (default: the CPU in fp32). Under ``torchrun`` every process
    calls this; the first one writes the run folder.
    """
    return train_classifier(data, out, config, resume, runtime=runtime)


def _classifier_of(config: PretrainConfig, num_classes: int) -> torch.nn.Module:
    return build_classifier(config.arch, num_classes, config.pretrained, config.encoder_weights, config.input_size,
                            config.resize_size)


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, config: PretrainConfig, resume: bool = True,
                     *, runtime: Runtime, kind: str = RUN_KIND, network=None,
                     task_type: type = ClassifierTask) -> list[dict]:
    """:func:`pretrain` for the CAM's variants: the run records ``kind``; ``network(config, num_classes)`` makes
    the network (default: the timm classifier of ``config.arch``; it is called once with random weights before
    the run folder is claimed, so a network the options cannot make fails first); ``task_type``: the
    :class:`ClassifierTask` (sub)class whose loss trains it and whose ``localizer_type`` validates it."""
    run = RunFolder(out)
    dataset = load_dataset(data)
    for split in ("train", "val"):
        if split not in dataset.splits:
            raise TedlocError(f"{data}: pretraining needs a {split!r} split")
    config, criterion, val_split = prepare_selection(config, SELECTIONS, dataset["val"])
    loc_split = val_split if criterion == "loc" else None  # per-epoch localization only to select on it
    if network is not None:
        from dataclasses import replace

        network(replace(config, pretrained=False, encoder_weights=None), dataset.num_classes)
    network = network or _classifier_of
    dist = runtime.dist
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()), "dataset": dataset.name,
                "class_names": dataset.class_names, "kind": kind}
    run.start(resolved, runtime)  # before any work: a folder in use or of another run is refused at once
    torch.manual_seed(config.seed)
    model = network(config, dataset.num_classes)
    preprocessing = model.preprocessing.to_dict()
    dist.on_main(lambda: run.confirm("preprocessing", preprocessing))  # a resume under another one is refused
    model = model.to(memory_format=torch.channels_last)  # ~30 % faster convolutions on CPU (BENCHMARKS.md)
    task = task_type(model, dataset, config, loc_split)
    meta = {"config": asdict(config), "arch": config.arch, "num_classes": dataset.num_classes}
    trainer = Trainer(Schedule.of(config, legacy_order_workers=config.workers > 0), runtime)
    history = trainer.fit(task, run, resume=resume, meta=meta)
    best = best_epoch(history, SELECTION_KEYS[criterion])
    if criterion == "loc":
        model.load_state_dict(load_checkpoint(run.checkpoint(best + 1))[0])
        threshold = history[best]["val_threshold"]
    else:
        threshold = _val_threshold(model, dataset, config, runtime, task_type.localizer_type)
    if dist.is_main:
        run.save_model(model, selected_model_record(
            kind, config, dataset.class_names, model.preprocessing, SELECTIONS, history, best, threshold,
            arch=config.arch, num_classes=dataset.num_classes, epoch=best))
    return history
