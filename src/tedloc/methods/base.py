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
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry

__all__ = ["LocalizationModel", "NetworkLocalizer", "register_model", "load_model", "list_models"]


class LocalizationModel(Protocol):
    class_names: list[str]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class scores (B, K), localization maps (B, h, w)) for normalised images (B, 3, S, S), on any
        device: they go to the localizer's."""
        ...

    def to(self, runtime: Runtime) -> "LocalizationModel":
        """Move to ``runtime``'s device and run in its precision."""
        ...


class NetworkLocalizer:
    """What the built-in localizers share: a network ``model`` and its normalisation, on a runtime."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], input_size: int, mean, std,
                 runtime: Runtime = Runtime()):
        self.model = model.eval()
        self.class_names = class_names
        self.input_size = input_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.to(runtime)

    def to(self, runtime: Runtime) -> "NetworkLocalizer":
        """Run on ``runtime``'s device and precision (the model moves there)."""
        self.runtime = runtime
        self.model.to(runtime.device)
        return self

    @property
    def device(self) -> torch.device:
        return self.runtime.device


_LOADERS: Registry[Callable[[Path, dict], LocalizationModel]] = Registry("run kind")


def register_model(kind: str):
    """Register ``loader(run folder, model.json, checkpoint stem or None, runtime) -> LocalizationModel`` for runs
    of ``kind``; with a checkpoint (``RUN/checkpoints/epoch_NNN``), its weights replace the trained ones."""
    return _LOADERS.register(kind)


def list_models() -> list[str]:
    return _LOADERS.names()


def load_model(run: str | os.PathLike, epoch: int | None = None, runtime: Runtime | None = None) -> LocalizationModel:
    """The localizer of a run folder (its ``model.json`` and ``model.safetensors``); with ``epoch``,
    the weights of that epoch's checkpoint (model selection over epochs). ``runtime``: the device
    and precision it runs on (default: the CPU in fp32)."""
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
    return _LOADERS.get(meta.get("kind"))(run, meta, checkpoint, runtime or Runtime())
