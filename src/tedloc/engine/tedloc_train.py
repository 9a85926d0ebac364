"""``tedloc train``: TeD-Loc training (only D and g train; E and the anchors are frozen).

Every step: the batch's cached pseudo-label maps go through each sample's crop and flip onto
the decoder's output grid, balanced FG/BG locations are drawn afresh, and
L = l1 L_KD + l2 P_CL + l3 I_CL is minimised with SGD. After every epoch: validation
(classification and localization with GT boxes), a checkpoint (safetensors + JSON), a
``metrics.csv`` row; the model selected by ``selection`` (``loc``: best val MaxBoxAcc, ``cls``:
best val top-1, ``last``) is written to ``RUN/model.{safetensors,json}`` with its encoder,
anchors, class names and operating threshold, so inference needs nothing else.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tedloc.cams.cache import MapCache
from tedloc.data import TrainTransform, WSOLImageDataset, load_dataset
from tedloc.engine.checkpoint import latest_checkpoint, load_checkpoint, restore_optimizer, save_checkpoint
from tedloc.engine.feature_cache import CachedFeatureDataset, build_feature_cache
from tedloc.engine.run_folder import claim_run_folder, set_step_lr, write_history
from tedloc.errors import TedlocError
from tedloc.methods.tedloc import TeDLocLocalizer
from tedloc.models.encoders import create_encoder
from tedloc.models.tedloc import TeDLoc, TeDLocLosses, tedloc_losses
from tedloc.pseudo import PseudoLabelSampler, SamplerConfig, maps_on_grid
from tedloc.text import TextAnchors
from tedloc.utils.progress import progress

__all__ = ["TeDLocTrainConfig", "train_tedloc", "build_tedloc"]

_logger = logging.getLogger(__name__)


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
        names = {f.name for f in fields(cls)}
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**d)


def _encoder_from_run(run: str | os.PathLike, name: str, img_size: int):
    """E from a pretrain run: its classifier without the head."""
    state, _, meta = load_checkpoint(Path(run) / "model")
    if meta.get("arch") != name:
        raise TedlocError(f"{run} trained {meta.get('arch')!r}, not the encoder {name!r}")
    encoder = create_encoder(name, img_size=img_size)
    backbone = {k: v for k, v in state.items() if not k.startswith(("fc.", "head.fc.", "head."))}
    missing, unexpected = encoder.model.load_state_dict(backbone, strict=False)
    if unexpected or [m for m in missing if not m.startswith(("fc", "head"))]:
        raise TedlocError(f"{run}: weights do not fit {name} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return encoder


def build_tedloc(config: TeDLocTrainConfig, anchors: TextAnchors) -> TeDLoc:
    """The model of ``config`` with E loaded as the config says and the anchors as a frozen buffer."""
    if config.encoder_run:
        encoder = _encoder_from_run(config.encoder_run, config.encoder, config.input_size)
    else:
        encoder = create_encoder(config.encoder, pretrained=config.pretrained, weights=config.encoder_weights,
                                 img_size=config.input_size)
    return TeDLoc(encoder, torch.from_numpy(anchors.vectors), tuple(config.decoder_channels), config.logit,
                  config.logit_scale)


def train_tedloc(data: str | os.PathLike, out: str | os.PathLike, anchors_path: str | os.PathLike,
                 cams: str | os.PathLike, config: TeDLocTrainConfig = TeDLocTrainConfig(), resume: bool = True
                 ) -> list[dict]:
    """Train (or resume) a TeD-Loc run; returns the per-epoch metrics."""
    from tedloc.eval.localizer_eval import evaluate_localizer

    if config.selection not in ("loc", "cls", "last"):
        raise TedlocError("selection must be loc, cls or last")
    out = Path(out)
    dataset = load_dataset(data)
    anchors = TextAnchors.load(anchors_path)
    if anchors.class_names != dataset.class_names:
        raise TedlocError(f"{anchors_path}: anchors of other classes than {data}")
    train_split, val_split = dataset["train"], dataset["val"]
    cache = MapCache(cams, train_split.image_ids)
    if not cache.complete:
        raise TedlocError(f"{cams}: the map cache is incomplete; finish it with `tedloc cams`")
    resolved = {"config": asdict(config), "data": str(Path(data).resolve()), "anchors": str(Path(anchors_path).resolve()),
                "cams": str(Path(cams).resolve()), "class_names": dataset.class_names, "kind": "tedloc"}
    claim_run_folder(out, resolved)

    torch.manual_seed(config.seed)
    model = build_tedloc(config, anchors)
    optimizer = torch.optim.SGD(model.head.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    weights = TeDLocLosses(*config.lambdas)
    sampler = PseudoLabelSampler(SamplerConfig(k=config.k, fg_pool=config.fg_pool, bg_pool=config.bg_pool))
    history: list[dict] = []
    start = 0
    last = latest_checkpoint(out / "checkpoints") if resume else None
    if last is not None:
        state, tensors, meta = load_checkpoint(last)
        model.head.load_state_dict(state)
        restore_optimizer(optimizer, tensors, meta["optimizer"])
        history, start = meta["history"], meta["epoch"] + 1
    info = model.encoder.info
    transform = TrainTransform(config.input_size, config.resize_size)
    if config.feature_cache:
        features = build_feature_cache(model.encoder, train_split, transform, config.feature_cache, config.cache_views,
                                       config.seed, config.batch_size, config.workers)
        train_ds = CachedFeatureDataset(features, train_split.labels, seed=config.seed)
    else:
        train_ds = WSOLImageDataset(train_split, transform, seed=config.seed, mean=info.mean, std=info.std)
    localizer = TeDLocLocalizer(model, dataset.class_names, config.input_size, mean=info.mean, std=info.std)
    for epoch in range(start, config.epochs):
        lr = set_step_lr(optimizer, config.lr, config.lr_gamma, config.lr_step, epoch)
        train_ds.set_epoch(epoch)
        loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                            generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
        model.train()
        t0 = time.perf_counter()
        sums = {"kd": 0.0, "pcl": 0.0, "icl": 0.0, "total": 0.0}
        steps = empty = 0
        for batch in progress(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch"):
            if "features" in batch:
                out_ = model.forward_head(batch["features"])
            else:
                out_ = model(batch["image"])
            grid = tuple(out_["fg"].shape[-2:])
            maps = maps_on_grid(cache.get(batch["index"].numpy()), batch["view"], grid)
            pseudo = sampler(maps, generator)
            losses = tedloc_losses(model, out_, batch["label"], pseudo, weights)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            for key in sums:
                sums[key] += losses[key].item()
            steps += 1
            empty += pseudo.empty
        val = evaluate_localizer(localizer, val_split, batch_size=config.batch_size, interval=config.interval)
        row = {"epoch": epoch + 1, "lr": lr, **{f"loss_{k}": v / steps for k, v in sums.items()},
               "no_pseudo_labels": empty, "val_CL@1": val.get("CL@1"), "val_MaxBoxAcc": val.get("MaxBoxAcc"),
               "val_MaxBoxAccV2": val.get("MaxBoxAccV2"), "val_threshold": val.get("threshold"),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        _logger.info("epoch %d/%d: loss %.3f (kd %.3f, pcl %.3f, icl %.3f), val CL@1 %.2f, MaxBoxAcc %.2f (%.0f s)",
                     epoch + 1, config.epochs, row["loss_total"], row["loss_kd"], row["loss_pcl"], row["loss_icl"],
                     row["val_CL@1"] or 0, row["val_MaxBoxAcc"] or 0, row["seconds"])
        meta = {"epoch": epoch, "history": history, "config": asdict(config)}
        save_checkpoint(out / "checkpoints" / f"epoch_{epoch + 1:03d}", model.head, meta, optimizer)
        write_history(out, history)
    key = {"loc": "val_MaxBoxAcc", "cls": "val_CL@1", "last": "epoch"}[config.selection]
    best = max(range(len(history)), key=lambda i: (history[i][key] or 0, -i if key != "epoch" else i))
    state, _, _ = load_checkpoint(out / "checkpoints" / f"epoch_{best + 1:03d}")
    model.head.load_state_dict(state)
    final = {"kind": "tedloc", "config": asdict(config), "class_names": dataset.class_names,
             "selected_epoch": best + 1, "selection": config.selection, "threshold": history[best]["val_threshold"],
             "anchors": anchors.metadata(), "history": history,
             "preprocessing": {"input_size": config.input_size, "mean": list(localizer.mean), "std": list(localizer.std)}}
    save_checkpoint(out / "model", model, final)
    return history
