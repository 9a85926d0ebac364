"""Methods by name: what a WSOL method plugs in, and the registry every command reads.

A method is one package under ``tedloc/methods/`` whose ``__init__`` calls :func:`register_method`
with a :class:`Method`: its hyper-parameters (a dataclass, which becomes the command-line options of
``tedloc train --method NAME`` and ``tedloc sweep``), its training function, the loader of its run
folders, the extra inputs its training needs, and its search space. Packages under ``methods/`` are
found on first use; a package installed elsewhere registers through the ``tedloc.methods`` entry
point group. Nothing else is edited to add a method.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tedloc.engine.run_folder import RunFolder
from tedloc.errors import TedlocError
from tedloc.models.localizer import LocalizationModel
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry

__all__ = ["Method", "register_method", "get_method", "list_methods", "method_for_kind", "load_model",
           "SHARED_SEARCH_SPACE"]

# the thesis' shared hyper-parameters (§4.4.1): name -> (kind, low, high); "log": log-uniform float, "int": integer
SHARED_SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log", 1e-5, 1.0), "weight_decay": ("log", 1e-5, 1.0), "lr_gamma": ("log", 1e-5, 1.0),
    "lr_step": ("int", 2, 9)}

Loader = Callable[[RunFolder, dict, "Path | None", Runtime], LocalizationModel]


def _last_row(history: list[dict]) -> str:
    vals = [f"{k} {v:.2f}" for k, v in history[-1].items() if k.startswith("val") and isinstance(v, float)]
    return "; ".join([f"{len(history)} epochs", *vals])


@dataclass(frozen=True)
class Method:
    """Everything the command line, the sweep, the protocol and the recipes need of a method.

    Attributes:
        name: the name users type (``tedloc train --method NAME``).
        description: one line for ``--help``.
        run_kind: the ``kind`` its runs record in ``model.json`` (how :func:`load_model` finds the loader).
        config: a dataclass of hyper-parameters; each field becomes ``--field-name``.
        train: ``train(data, out, config, resume=True, runtime=None, **inputs) -> history`` (one dict per epoch).
        load: ``load(run, model.json, checkpoint stem or None, runtime) -> LocalizationModel``; with a checkpoint
            (an epoch's), its weights replace the selected model's.
        inputs: extra inputs of ``train`` beyond the data: name -> help (``--name PATH``, required).
        option_help: argparse keywords (``help``, ``choices``, ``metavar``) per config field.
        search_space: the sweep's space: field -> (``log`` | ``int``, low, high).
        summary: one line about a finished training's history.
    """

    name: str
    description: str
    run_kind: str
    config: type
    train: Callable[..., list[dict]]
    load: Loader
    inputs: dict[str, str] = field(default_factory=dict)
    option_help: dict[str, dict] = field(default_factory=dict)
    search_space: dict[str, tuple[str, float, float]] = field(default_factory=lambda: dict(SHARED_SEARCH_SPACE))
    summary: Callable[[list[dict]], str] = _last_row


_METHODS: Registry[Method] = Registry("method")
_discovered = False


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry (a name or run kind registered twice is an error)."""
    for other in _METHODS.values():
        if other.run_kind == method.run_kind:
            raise ValueError(f"run kind {method.run_kind!r} of method {method.name!r} is {other.name!r}'s")
    return _METHODS.register(method.name)(method)


def _discover() -> None:
    """Import every package under ``tedloc/methods/`` and the ``tedloc.methods`` entry points, once."""
    global _discovered
    if _discovered:
        return
    import tedloc.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{package.__name__}.{info.name}")
    from importlib.metadata import entry_points

    for entry in entry_points(group="tedloc.methods"):
        try:
            entry.load()
        except Exception as e:  # a broken plugin: say which, one line
            raise TedlocError(f"the tedloc.methods plugin {entry.name!r} ({entry.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from None
    _discovered = True


def get_method(name: str) -> Method:
    """The method registered as ``name`` (an unknown name is a :class:`TedlocError` listing the choices)."""
    _discover()
    return _METHODS.get(name)


def list_methods() -> list[str]:
    """The registered methods' names, sorted."""
    _discover()
    return _METHODS.names()


def method_for_kind(kind: str | None, where: str = "model.json") -> Method:
    """The method whose runs record ``kind``."""
    _discover()
    for method in _METHODS.values():
        if method.run_kind == kind:
            return method
    kinds = sorted(m.run_kind for m in _METHODS.values())
    raise TedlocError(f"{where}: unknown run kind {kind!r}; known: {', '.join(kinds)}")


def load_model(run: str | os.PathLike | RunFolder, epoch: int | None = None,
               runtime: Runtime | None = None) -> LocalizationModel:
    """The localizer of a run folder (its selected model); with ``epoch``, the weights of that epoch's
    checkpoint (model selection over epochs). ``runtime``: the device and precision it runs on
    (default: the CPU in fp32)."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    meta = run.metadata()
    checkpoint = None
    if epoch is not None:
        checkpoint = run.checkpoint(epoch)
        if not checkpoint.with_suffix(".safetensors").is_file():
            raise TedlocError(f"{run}: no checkpoint of epoch {epoch}")
    method = method_for_kind(meta.get("kind"), str(run.metadata_path))
    return method.load(run, meta, checkpoint, runtime or Runtime())
