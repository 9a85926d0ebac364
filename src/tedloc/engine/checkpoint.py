"""Checkpoints as safetensors (tensors) + JSON (everything else); never pickles.

A checkpoint ``STEM`` is ``STEM.safetensors`` (model tensors under ``model.``, optimizer state
tensors under ``optim.<param index>.<name>``) and ``STEM.json`` (epoch, config, metrics, the
optimizer's scalar state). Both are written atomically, the JSON last: a checkpoint whose JSON
exists is complete, so an interrupted write is never mistaken for one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from tedloc.errors import TedlocError
from tedloc.utils.io import atomic_write, atomic_write_text

__all__ = ["save_checkpoint", "load_checkpoint", "optimizer_tensors", "restore_optimizer"]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state into tensors (for safetensors) and JSON-able scalars."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars["state"].setdefault(str(index), {})[key] = float(value) if torch.is_tensor(value) else value
    return tensors, scalars


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict) -> None:
    """Load an optimizer's state from :func:`optimizer_tensors`' two parts."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entry in scalars.get("state", {}).items():
        for key, value in entry.items():
            state.setdefault(int(index), {})[key] = torch.tensor(value) if key == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def save_checkpoint(stem: str | os.PathLike, model: torch.nn.Module, meta: dict,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write ``stem.safetensors`` then ``stem.json`` (atomically)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
    with atomic_write(stem.with_suffix(".safetensors"), "wb") as f:  # an OSError names the file (full disk)
        f.write(save(tensors))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return stem


def load_checkpoint(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(model state dict, all tensors, meta) of a complete checkpoint."""
    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    meta_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not meta_path.is_file() or not tensor_path.is_file():
        raise TedlocError(f"incomplete or missing checkpoint: {stem} (.json and .safetensors are both needed)")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensor_path))
    except Exception as e:  # damaged files: name them
        raise TedlocError(f"cannot read checkpoint {stem}: {type(e).__name__}: {e}") from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return model, tensors, meta
