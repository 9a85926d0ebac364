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

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.run_folder import RunFolder
from tedloc.engine.run_record import RunRecord
from tedloc.errors import TedlocError
from tedloc.methods.base import config_from_dict
from tedloc.models.localizer import LocalizationModel, use_map, use_target_layer
from tedloc.utils.device import Runtime
from tedloc.utils.registry import Registry

__all__ = ["Method", "register_method", "get_method", "list_methods", "method_for_kind", "load_model", "is_finished_run",
           "SHARED_SEARCH_SPACE", "METHOD_KINDS"]

METHOD_KINDS = ("trained", "training-free")

# the thesis' shared hyper-parameters (§4.4.1): name -> (kind, low, high); "log": log-uniform float, "int": integer
SHARED_SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log", 1e-5, 1.0), "weight_decay": ("log", 1e-5, 1.0), "lr_gamma": ("log", 1e-5, 1.0),
    "lr_step": ("int", 2, 9)}

Builder = Callable[[object, int, dict], torch.nn.Module]


def _last_row(history: list[dict]) -> str:
    vals = [f"{k} {v:.2f}" for k, v in history[-1].items() if k.startswith("val") and isinstance(v, float)]
    return "; ".join([f"{len(history)} epochs", *vals])


def _no_reference(config, model: torch.nn.Module) -> Preprocessing | None:
    return None


@dataclass(frozen=True)
class Method:
    """Everything the command line, the sweep, the protocol and the recipes need of a method.

    A **trained** method (``kind="trained"``) trains into a run folder and is loaded back generically:
    ``build`` the network, load ``model.safetensors``, wrap it in ``localizer``. A **training-free** one
    (``kind="training-free"``: the CLIP localizers) only has ``create``.

    Attributes:
        name: the name users type (``tedloc train --method NAME``, ``tedloc evaluate --method NAME``).
        description: one line for ``--help``.
        run_kind: the ``kind`` its runs record in ``model.json`` (how :func:`load_model` finds the method).
        config: a dataclass of hyper-parameters; each field becomes ``--field-name`` (its ``help``, ``choices``,
            ``metavar`` and ``nargs`` in the field's ``metadata``).
        train: ``train(data, out, config, resume=True, *, runtime, **inputs) -> history`` (one dict per epoch).
        build: ``build(config, num_classes, weights) -> nn.Module``: the network of a run, random weights
            (``weights``: the state dict about to be loaded, for frozen buffers whose shape the data decides,
            such as TeD-Loc's anchors).
        localizer: ``localizer(model, class_names, preprocessing=..., runtime=...)``: the network at inference.
        epoch_module: the submodule an epoch checkpoint holds (None: the whole network).
        reference_preprocessing: ``(config, model) -> Preprocessing | None``: the normalisation the weights
            impose when they were not trained here (timm's or a file's); None: the run's record is the truth.
        inputs: extra inputs of ``train`` beyond the data: name -> help (``--name PATH``, required).
        search_space: the sweep's space: field -> (``log`` | ``int``, low, high).
        summary: one line about a finished training's history.
        kind: ``trained`` or ``training-free``.
        create: a training-free method's ``create(class_names, *, runtime, **options) -> LocalizationModel``.
    """

    name: str
    description: str
    run_kind: str | None = None
    config: type | None = None
    train: Callable[..., list[dict]] | None = None
    build: Builder | None = None
    localizer: Callable[..., LocalizationModel] | None = None
    epoch_module: str | None = None
    reference_preprocessing: Callable[[object, torch.nn.Module], Preprocessing | None] = _no_reference
    inputs: dict[str, str] = field(default_factory=dict)
    search_space: dict[str, tuple[str, float, float]] = field(default_factory=lambda: dict(SHARED_SEARCH_SPACE))
    summary: Callable[[list[dict]], str] = _last_row
    kind: str = "trained"
    create: Callable[..., LocalizationModel] | None = None

    def __post_init__(self):
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {', '.join(METHOD_KINDS)}")
        needed = (("run_kind", "config", "train", "build", "localizer") if self.kind == "trained" else ("create",))
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.kind} method {self.name!r} needs {', '.join(missing)}")

    def config_of(self, values: dict):
        """The config dataclass of a dict (e.g. a run's recorded config)."""
        return config_from_dict(self.config, values)


_METHODS: Registry[Method] = Registry("method")
_discovered = False


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry (a name or run kind registered twice is an error)."""
    for other in _METHODS.values():
        if method.run_kind is not None and other.run_kind == method.run_kind:
            raise ValueError(f"run kind {method.run_kind!r} of method {method.name!r} is {other.name!r}'s")
    return _METHODS.register(method.name)(method)


def _discover() -> None:
    """Import every package under ``tedloc/methods/`` and the ``tedloc.methods`` entry points, once."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.ispkg:
            importlib.import_module(f"{__package__}.{info.name}")
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


def list_methods(kind: str | None = None) -> list[str]:
    """The registered methods' names, sorted (only those of ``kind``, ``trained`` or ``training-free``, if given)."""
    _discover()
    return [m.name for m in _METHODS.values() if kind is None or m.kind == kind]


def method_for_kind(kind: str | None, where: str = "model.json") -> Method:
    """The method whose runs record ``kind``."""
    _discover()
    for method in _METHODS.values():
        if kind is not None and method.run_kind == kind:
            return method
    kinds = sorted(m.run_kind for m in _METHODS.values() if m.run_kind is not None)
    raise TedlocError(f"{where}: unknown run kind {kind!r}; known: {', '.join(kinds)}")


def load_model(run: str | os.PathLike | RunFolder, epoch: int | None = None, *, runtime: Runtime,
               map_kind: str | None = None, target_layer: str | None = None) -> LocalizationModel:
    """The localizer of a run folder (its selected model); with ``epoch``, the weights of that epoch's
    checkpoint (model selection over epochs). ``runtime``: the device and precision it runs on; ``map_kind``:
    the map it predicts, for methods with several (TeD-Loc: ``g`` or ``class``; None: the method's own);
    ``target_layer``: the module path its post-hoc maps (Grad-CAM, Score-CAM, ...) are computed on (None: the
    architecture's default).

    One path for every method: its ``build`` makes the network of the recorded config, the weights are
    loaded, the recorded preprocessing is checked against the weights' own (``reference_preprocessing``)
    and the network is wrapped in the method's ``localizer``.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    where = str(run.metadata_path)
    meta = run.metadata()
    if not isinstance(meta, dict):
        raise TedlocError(f"{where}: expected a JSON object")
    method = method_for_kind(meta.get("kind"), where)
    record = RunRecord.from_dict(meta, where)
    checkpoint = None
    if epoch is not None:
        checkpoint = run.checkpoint(epoch)
        if not checkpoint.with_suffix(".safetensors").is_file():
            raise TedlocError(f"{run}: no checkpoint of epoch {epoch}")
    config = method.config_of(record.config)
    state, _, _ = load_checkpoint(run.model_stem)
    model = method.build(config, record.num_classes, state)
    _load_weights(model, state, f"{run.model_stem}.safetensors")
    if checkpoint is not None:  # an epoch checkpoint holds the trained part (or all) of the network
        part = model if method.epoch_module is None else getattr(model, method.epoch_module)
        _load_weights(part, load_checkpoint(checkpoint)[0], f"{checkpoint}.safetensors")
    if record.preprocessing is None:
        raise TedlocError(f"{where}: preprocessing: expected a preprocessing record, got NoneType")
    reference = method.reference_preprocessing(config, model)
    if reference is not None:
        record.preprocessing.check_normalization(reference, where)
    model.preprocessing = record.preprocessing
    localizer = method.localizer(model, record.class_names, preprocessing=record.preprocessing, runtime=runtime)
    return use_target_layer(use_map(localizer, map_kind, str(run)), target_layer, str(run))


def _load_weights(module: torch.nn.Module, state: dict, where: str) -> None:
    """``module.load_state_dict(state)``, weights that do not fit being one line naming the file."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        last = lines[-1] if lines else str(e)
        raise TedlocError(f"{where}: the weights do not fit the recorded network: {last}") from None


def is_finished_run(run: str | os.PathLike) -> bool:
    """Whether ``run`` is a run folder whose training has written its selected model (what :func:`load_model`
    loads)."""
    return RunFolder(run).is_finished()
