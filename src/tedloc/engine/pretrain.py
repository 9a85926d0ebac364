"""``tedloc pretrain``: train a classifier (encoder + global pooling + linear head) on a train split.

The offline world has no pretrained weights, so the encoder that TeD-Loc freezes and the CAM
baseline's classifier are trained here from scratch (or fine-tuned from local weights).
Schedule as in wsolevaluation: SGD with Nesterov momentum 0.9, weight decay, the learning rate
multiplied by ``lr_gamma`` every ``lr_step`` epochs; train transform = resize, random crop,
flip; validation top-1/top-5 after every epoch.

Run folder::

    RUN/config.json            resolved configuration, classes, preprocessing
    RUN/metrics.csv            one row per epoch
    RUN/checkpoints/epoch_NNN  safetensors + JSON, every epoch (model and optimizer)
    RUN/model.{safetensors,json}   the last epoch's model (what other commands load)

An interrupted run resumes from its last complete checkpoint and ends with the same weights
as an uninterrupted one: shuffling and augmentation depend only on (seed, epoch, index).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tedloc.data import EvalTransform, TrainTransform, WSOLImageDataset, load_dataset
from tedloc.engine.checkpoint import latest_checkpoint, load_checkpoint, restore_optimizer, save_checkpoint
from tedloc.engine.run_folder import claim_run_folder, set_step_lr, write_history
from tedloc.errors import TedlocError
from tedloc.utils.progress import progress

__all__ = ["PretrainConfig", "pretrain", "build_classifier", "evaluate_classifier"]

_logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Hyper-parameters of ``tedloc pretrain`` (defaults: the Tiny ImageNet / synthetic recipe)."""

    arch: str = "tedloc_resnet_tiny"
    input_size: int = 64
    resize_size: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    lr_step: int = 4
    lr_gamma: float = 0.1
    seed: int = 0
    workers: int = 2
    pretrained: bool = False
    encoder_weights: str | None = None


def build_classifier(arch: str, num_classes: int, pretrained: bool = False, weights: str | None = None,
                     input_size: int | None = None) -> torch.nn.Module:
    """A timm classifier (tedloc's small CNNs included) with a fresh ``num_classes`` head."""
    import timm

    import tedloc.models.cnn  # noqa: F401  (registers tedloc_resnet_*)

    kwargs = {}
    if weights is not None:
        if not os.path.isfile(weights):
            raise TedlocError(f"encoder weights not found: {weights}")
        kwargs["pretrained_cfg_overlay"] = dict(file=os.fspath(weights))
        pretrained = True
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except RuntimeError as e:
        if "nknown model" in str(e):
            raise TedlocError(f"unknown architecture {arch!r}; see timm.list_models()") from None
        raise


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, loader: DataLoader) -> dict:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy over a loader."""
    model.eval()
    n = top1 = top5 = 0
    loss = 0.0
    for batch in loader:
        logits = model(batch["image"])
        labels = batch["label"]
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        top1 += int((top[:, 0] == labels).sum())
        top5 += int((top == labels[:, None]).any(dim=1).sum())
        n += len(labels)
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "loss": loss / n}


def _loader(dataset, batch_size: int, workers: int, shuffle: bool, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator,
                      persistent_workers=False, drop_last=False)


def _val_threshold(model: torch.nn.Module, dataset, config: PretrainConfig) -> float | None:
    """The CAM threshold with the best val MaxBoxAcc (GT boxes), stored for `tedloc predict`; None without boxes."""
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods.cam import CAMLocalizer

    val = dataset["val"]
    if not val.has_boxes:
        return None
    localizer = CAMLocalizer(model, dataset.class_names, config.input_size)
    return evaluate_localizer(localizer, val, batch_size=config.batch_size, masks=False)["threshold"]


def pretrain(data: str | os.PathLike, out: str | os.PathLike, config: PretrainConfig = PretrainConfig(),
             resume: bool = True) -> list[dict]:
    """Train (or resume) a classifier run; returns the per-epoch metrics."""
    out = Path(out)
    dataset = load_dataset(data)
    for split in ("train", "val"):
        if split not in dataset.splits:
            raise TedlocError(f"{data}: pretraining needs a {split!r} split")
    train_split, val_split = dataset["train"], dataset["val"]
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()), "dataset": dataset.name,
                "class_names": dataset.class_names, "kind": "classifier",
                "preprocessing": {"input_size": config.input_size, "mean": [0.485, 0.456, 0.406],
                                  "std": [0.229, 0.224, 0.225]}}
    claim_run_folder(out, resolved)

    torch.manual_seed(config.seed)
    model = build_classifier(config.arch, dataset.num_classes, config.pretrained, config.encoder_weights)
    model = model.to(memory_format=torch.channels_last)  # ~30 % faster convolutions on CPU (BENCHMARKS.md)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    history: list[dict] = []
    start_epoch = 0
    last = latest_checkpoint(out / "checkpoints") if resume else None
    if last is not None:
        state, tensors, meta = load_checkpoint(last)
        model.load_state_dict(state)
        restore_optimizer(optimizer, tensors, meta["optimizer"])
        history = meta["history"]
        start_epoch = meta["epoch"] + 1
        _logger.info("resuming %s after epoch %d", out, meta["epoch"] + 1)

    train_ds = WSOLImageDataset(train_split, TrainTransform(config.input_size, config.resize_size), seed=config.seed)
    val_loader = _loader(WSOLImageDataset(val_split, EvalTransform(config.input_size)), config.batch_size,
                         config.workers, shuffle=False)
    for epoch in range(start_epoch, config.epochs):
        lr = set_step_lr(optimizer, config.lr, config.lr_gamma, config.lr_step, epoch)
        train_ds.set_epoch(epoch)
        loader = _loader(train_ds, config.batch_size, config.workers, shuffle=True, seed=config.seed * 100003 + epoch)
        model.train()
        t0 = time.perf_counter()
        seen = correct = 0
        total = 0.0
        for batch in progress(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch"):
            logits = model(batch["image"].contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(batch["label"])
            seen += n
            total += loss.item() * n
            correct += int((logits.argmax(1) == batch["label"]).sum())
        val = evaluate_classifier(model, val_loader)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / seen, "train_top1": 100.0 * correct / seen,
               "val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        _logger.info("epoch %d/%d: loss %.3f, train top-1 %.2f, val top-1 %.2f, top-5 %.2f (%.0f s)", epoch + 1,
                     config.epochs, row["train_loss"], row["train_top1"], row["val_top1"], row["val_top5"],
                     row["seconds"])
        meta = {"epoch": epoch, "history": history, "config": asdict(config), "arch": config.arch,
                "num_classes": dataset.num_classes}
        save_checkpoint(out / "checkpoints" / f"epoch_{epoch + 1:03d}", model, meta, optimizer)
        write_history(out, history)
    final = {"epoch": config.epochs - 1, "history": history, "config": asdict(config), "arch": config.arch,
             "num_classes": dataset.num_classes, "class_names": dataset.class_names, "kind": "classifier",
             "preprocessing": resolved["preprocessing"], "threshold": _val_threshold(model, dataset, config)}
    save_checkpoint(out / "model", model, final)
    return history
