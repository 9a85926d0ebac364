"""The interface every WSOL method offers downstream: images in, class scores and maps out.

Evaluation, prediction and the realistic protocol only see a :class:`LocalizationModel`; a run folder
says which kind made it (``RUN/model.json``: ``kind``), and :func:`load_model` finds the
loader registered for that kind. A new method plugs in by registering its loader.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Protocol

import torch

from tedloc.errors import TedlocError
from tedloc.utils.registry import Registry

__all__ = ["LocalizationModel", "register_model", "load_model", "list_models"]


class LocalizationModel(Protocol):
    class_names: list[str]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class scores (B, K), localization maps (B, h, w)) for normalised images (B, 3, S, S)."""
        ...


_LOADERS: Registry[Callable[[Path, dict], LocalizationModel]] = Registry("run kind")


def register_model(kind: str):
    """Register ``loader(run folder, model.json, checkpoint stem or None) -> LocalizationModel`` for runs
    of ``kind``; with a checkpoint (``RUN/checkpoints/epoch_NNN``), its weights replace the trained ones."""
    return _LOADERS.register(kind)


def list_models() -> list[str]:
    return _LOADERS.names()


def load_model(run: str | os.PathLike, epoch: int | None = None) -> LocalizationModel:
    """The localizer of a run folder (its ``model.json`` and ``model.safetensors``); with ``epoch``,
    the weights of that epoch's checkpoint (model selection over epochs)."""
    import tedloc.methods.cam  # noqa: F401  (register the built-in kinds)
    import tedloc.methods.tedloc  # noqa: F401

    run = Path(run)
    meta_path = run / "model.json"
    if not meta_path.is_file():
        raise TedlocError(f"{run}: no model.json (not a finished tedloc run; train it first)")
    meta = json.loads(meta_path.read_text())
    checkpoint = None
    if epoch is not None:
        checkpoint = run / "checkpoints" / f"epoch_{int(epoch):03d}"
        if not checkpoint.with_suffix(".safetensors").is_file():
            raise TedlocError(f"{run}: no checkpoint of epoch {epoch}")
    return _LOADERS.get(meta.get("kind"))(run, meta, checkpoint)
