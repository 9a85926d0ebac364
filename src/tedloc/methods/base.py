"""What the built-in methods share: the common training options (:class:`TrainConfig`), a network as a
localizer (:class:`NetworkLocalizer`), encoder loading, and model selection."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from tedloc.data.box_files import split_with_box_file
from tedloc.data.dataset import Split
from tedloc.data.preprocessing import Preprocessing
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.run_folder import RunFolder
from tedloc.engine.run_record import RunRecord
from tedloc.errors import TedlocError
from tedloc.eval.conventions import EvalProtocol, eval_protocol
from tedloc.models.encoders import FrozenEncoder, create_encoder
from tedloc.utils.device import Runtime

__all__ = ["TrainConfig", "NetworkLocalizer", "option", "recorded_preprocessing", "load_encoder", "config_from_dict",
           "best_epoch", "selection_criterion", "selection_split", "threshold_source", "resolved_selection",
           "prepare_selection", "PSEUDO_SELECTION", "SELECTION_KEYS", "VALIDATION_INTERVAL", "validation_protocol",
           "encoder_reference", "selected_model_record"]

VALIDATION_INTERVAL = eval_protocol("validation").interval  # the training configs' default ``interval``
PSEUDO_SELECTION = "pseudo:"  # selection "pseudo:FILE": best val MaxBoxAcc against FILE's val pseudo-boxes
SELECTION_KEYS = {"loc": "val_MaxBoxAcc", "cls": "val_CL@1", "last": None}  # criterion -> history column maximised


def option(default, help: str, **argparse_keywords):
    """A config field with its command-line help (and ``choices``, ``metavar``, ``nargs``) in its metadata."""
    return field(default=default, metadata={"help": help, **argparse_keywords})


@dataclass(kw_only=True)
class TrainConfig:
    """The training options every method shares; a method's config subclasses it (a field declared again
    changes its default; its help is the base's unless it gives its own). Each field becomes ``--field-name``."""

    epochs: int = option(10, "training epochs")
    batch_size: int = option(64, "images per process and step (with torchrun, the global batch is N times this)")
    lr: float = option(0.01, "learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "weight decay")
    lr_step: int = option(4, "multiply the learning rate by lr-gamma every N epochs")
    lr_gamma: float = option(0.1, "the learning rate's step decay factor")
    selection: str = option("loc", "model selection and the stored threshold")
    interval: float = option(VALIDATION_INTERVAL, "threshold interval of the per-epoch validation")
    map_size: int | None = option(None, "side of the square the maps are scored at, by the per-epoch validation and "
                                        "`tedloc evaluate` of the run (default: the input size; the TeD-Loc paper: "
                                        "256)")
    seed: int = option(0, "random seed (shuffling, augmentation, pseudo-label draws)")
    frames_per_shot: int = option(1, "video datasets: frames drawn from each train shot per epoch (keyed by seed, "
                                     "epoch and sample)")
    workers: int = option(0, "data loader processes")

    @classmethod
    def from_dict(cls, d: dict):
        """The config of a dict (e.g. read from JSON): unknown keys are ignored, lists become tuples."""
        return config_from_dict(cls, d)


class NetworkLocalizer:
    """A network ``model`` as a :class:`~tedloc.models.localizer.LocalizationModel`.

    ``preprocessing`` defaults to the model's own record (``model.preprocessing``).
    """

    map_kind = "map"

    def __init__(self, model: torch.nn.Module, class_names: list[str], preprocessing: Preprocessing | None = None, *,
                 runtime: Runtime):
        self.model = model.eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing or model.preprocessing
        self.to(runtime)

    def to(self, runtime: Runtime) -> "NetworkLocalizer":
        """Run on ``runtime``'s device and precision (the model moves there)."""
        self.runtime = runtime
        self.model.to(runtime.device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.runtime.device


def recorded_preprocessing(run: RunFolder, meta: dict, weights: Preprocessing | None) -> Preprocessing:
    """The preprocessing recorded in ``run``'s ``model.json``. ``weights``: the record of weights the run did not
    train (timm's or a file's, from :func:`~tedloc.models.preprocessing_of`): the recorded normalisation must be
    theirs (a mismatch is a :class:`TedlocError` naming the file); None: weights the run (or the run it
    started from) trained itself, whose record is the truth."""
    where = str(run.metadata_path)
    recorded = Preprocessing.from_dict(meta.get("preprocessing"), where=f"{where}: preprocessing")
    if weights is not None:
        recorded.check_normalization(weights, where)
    return recorded


def _encoder_from_run(run: str | os.PathLike, name: str, img_size: int) -> FrozenEncoder:
    """E from a pretrain run: its classifier without the head, with the normalisation that run trained it
    under (its record; ImageNet's for runs that recorded none)."""
    folder = RunFolder(run)
    state, _, meta = load_checkpoint(folder.model_stem)
    if meta.get("arch") != name:
        raise TedlocError(f"{run} trained {meta.get('arch')!r}, not the encoder {name!r}")
    encoder = create_encoder(name, img_size=img_size)
    trained = recorded_preprocessing(folder, meta, None) if "preprocessing" in meta else Preprocessing()
    encoder.preprocessing = trained.replace(input_size=img_size, resize_size=None)
    backbone = {k: v for k, v in state.items() if not k.startswith(("fc.", "head.fc.", "head."))}
    pos = getattr(encoder.model, "pos_embed", None)
    if pos is not None and "pos_embed" in backbone and backbone["pos_embed"].shape != pos.shape:
        # a ViT trained at another input size: its position embeddings resampled to this grid (as timm does)
        from timm.layers import resample_abs_pos_embed

        prefix = 0 if getattr(encoder.model, "no_embed_class", False) else int(encoder.model.num_prefix_tokens)
        backbone["pos_embed"] = resample_abs_pos_embed(backbone["pos_embed"], list(encoder.model.patch_embed.grid_size),
                                                       num_prefix_tokens=prefix)
    try:
        missing, unexpected = encoder.model.load_state_dict(backbone, strict=False)
    except RuntimeError as e:  # shapes that do not fit: one line
        raise TedlocError(f"{run}: weights do not fit {name}: {str(e).splitlines()[-1].strip()}") from None
    if unexpected or [m for m in missing if not m.startswith(("fc", "head"))]:
        raise TedlocError(f"{run}: weights do not fit {name} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return encoder


def load_encoder(name: str, img_size: int, run: str | os.PathLike | None = None,
                 weights: str | os.PathLike | None = None, pretrained: bool = False) -> FrozenEncoder:
    """The frozen encoder ``name`` at ``img_size`` with its weights from a ``tedloc pretrain`` ``run`` (its
    backbone and recorded normalisation), a local ``weights`` file, timm's (``pretrained``), or random."""
    if run:
        return _encoder_from_run(run, name, img_size)
    return create_encoder(name, pretrained=pretrained, weights=weights, img_size=img_size)


def selected_model_record(kind: str, config, class_names: list[str], preprocessing: Preprocessing,
                          choices: tuple[str, ...], history: list[dict], best: int, threshold: float | None,
                          **extra) -> RunRecord:
    """The record of the model a training run selected: epoch ``best`` (0-based) of ``history``, with its threshold
    and what that was chosen on (the config's ``selection`` among ``choices``); ``extra``: the method's own entries."""
    return RunRecord(kind, dataclasses.asdict(config), list(class_names), preprocessing, threshold,
                     threshold_source(config.selection, choices, threshold), config.selection, best + 1, history,
                     extra=extra)


def validation_protocol(config) -> EvalProtocol:
    """How a training run validates every epoch: the ``validation`` preset at its config's ``interval`` and
    ``map_size`` (None: the input size), so the stored threshold is chosen on maps of the size they are scored at."""
    return eval_protocol("validation", interval=config.interval, map_size=getattr(config, "map_size", None))


def encoder_reference(config, model: torch.nn.Module) -> Preprocessing | None:
    """The normalisation a frozen encoder's weights impose (``Method.reference_preprocessing`` of TeD-Loc and
    DiPS): None for an encoder trained by a `tedloc pretrain` run (the run's record is the truth), else timm's
    record of the encoder (its weights came from timm or a file, or are random)."""
    return None if config.encoder_run else model.encoder.preprocessing


def config_from_dict(cls: type, d: dict):
    """The config dataclass ``cls`` of a dict (e.g. read from JSON): unknown keys are ignored, lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def best_epoch(history: list[dict], key: str | None) -> int:
    """The epoch (0-based) of the largest ``history[i][key]`` (None counts as 0; the earliest on ties; a
    :class:`TedlocError` when no epoch has it); the last epoch when ``key`` is None."""
    if key is None:
        return len(history) - 1
    if all(row.get(key) is None for row in history):
        raise TedlocError(f"no epoch recorded {key}: nothing to select on")
    return max(range(len(history)), key=lambda i: (history[i].get(key) or 0, -i))


def selection_criterion(selection: str, choices: tuple[str, ...]) -> tuple[str, str | None]:
    """``(criterion, box file)`` of a ``selection`` option: one of ``choices`` (``loc``: best val MaxBoxAcc
    against the GT boxes), or ``pseudo:FILE``: ``loc`` against the val pseudo-boxes of FILE (a box file of
    ``tedloc pseudo-boxes``), so no GT box is used for model selection or for the stored threshold."""
    if selection.startswith(PSEUDO_SELECTION) and "loc" in choices:
        path = selection[len(PSEUDO_SELECTION):]
        if not path:
            raise TedlocError("selection pseudo:FILE needs the box file's path after 'pseudo:'")
        return "loc", path
    if selection not in choices:
        raise TedlocError(f"selection must be {', '.join(choices)} or pseudo:FILE (val pseudo-boxes), "
                          f"got {selection!r}")
    return selection, None


def selection_split(selection: str, choices: tuple[str, ...], val: Split) -> Split:
    """The val split localization is validated on: with its GT boxes, or with the boxes of ``pseudo:FILE``
    in their place (every val image needs one: a :class:`~tedloc.errors.DataError` names the file and line).
    ``loc`` on a val split without GT boxes is refused."""
    criterion, path = selection_criterion(selection, choices)
    if path is not None:  # the pseudo-boxes only: the GT masks are dropped too
        return dataclasses.replace(split_with_box_file(val, path), mask_paths=[()] * len(val),
                                   ignore_paths=[None] * len(val))
    if criterion == "loc" and not val.has_boxes:
        raise TedlocError("selection loc needs GT boxes on the val split; use --selection pseudo:FILE "
                          "(val pseudo-boxes) or last")
    return val


def threshold_source(selection: str, choices: tuple[str, ...], threshold: float | None) -> dict | None:
    """What a run's stored threshold was estimated on (recorded in ``model.json``): the val split against
    its GT boxes, or against the pseudo-boxes of ``pseudo:FILE``; None without a threshold."""
    if threshold is None:
        return None
    _, path = selection_criterion(selection, choices)
    return {"split": "val", "boxes": "GT" if path is None else str(os.path.abspath(path)), "criterion": "MaxBoxAcc"}


def resolved_selection(selection: str) -> str:
    """``pseudo:FILE`` with FILE made absolute (what a run records: a resume from another folder reads the
    same file); any other selection as it is."""
    if selection.startswith(PSEUDO_SELECTION) and len(selection) > len(PSEUDO_SELECTION):
        return PSEUDO_SELECTION + os.path.abspath(selection[len(PSEUDO_SELECTION):])
    return selection


def prepare_selection(config, choices: tuple[str, ...], val: Split):
    """``(config with its pseudo:FILE made absolute, its criterion, the val split localization is validated
    on)``: what a training function needs of its ``selection`` before it claims the run folder (a bad box
    file fails first, and so do a bad ``interval`` or ``map_size``)."""
    validation_protocol(config)
    config = dataclasses.replace(config, selection=resolved_selection(config.selection))
    criterion, _ = selection_criterion(config.selection, choices)
    return config, criterion, selection_split(config.selection, choices, val)
