"""How a localization is scored: one record, :class:`EvalProtocol`, and its named presets.

    protocol = eval_protocol("standard")                  # the papers': 1,000 thresholds, GT-known maps
    protocol = eval_protocol("validation", interval=0.004) # a preset with one setting changed

Every evaluation (``WSOLEvaluator``, ``evaluate_localizer``, ``evaluate_map_folder``, the protocol
table, the training loops' validation, ``tedloc evaluate``) takes a record or a preset name. The
presets are the only place where the settings' defaults are written; ``to_dict()`` is both the key
of every cache of evaluation results and the conventions block of the metrics' JSON.

- ``standard``: wsolevaluation's final evaluation and the papers': CAM thresholds every 0.001
  (``np.arange(0, 1, 0.001)``), the best threshold of the evaluated split (``oracle``), class-dependent
  maps of the true class (GT-known), maps scored at the model's input size, IoU 30/50/70.
- ``validation``: the per-epoch validation of training and the model selection of the realistic
  protocol: the same with thresholds every 0.01 (wsolevaluation's validation, 100 thresholds).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from tedloc.errors import OptionError
from tedloc.eval.scoremaps import threshold_list
from tedloc.utils.registry import Registry

__all__ = ["EvalProtocol", "EVAL_PROTOCOLS", "eval_protocol", "THRESHOLD_MODES", "MAP_CLASSES"]

THRESHOLD_MODES = ("oracle", "fixed", "otsu")  # how a map becomes a box (see tedloc.eval.evaluator)
MAP_CLASSES = ("true", "pred")  # whose map a class-dependent map is: the true class's (GT-known) or the predicted


@dataclass(frozen=True)
class EvalProtocol:
    """The settings that decide a WSOL number (none has a default here: see :data:`EVAL_PROTOCOLS`)."""

    interval: float = field(metadata={"help": "CAM threshold interval: thresholds np.arange(0, 1, interval)"})
    mode: str = field(metadata={"help": "oracle: the best threshold on the evaluated split; fixed: --tau for every "
                                        "map; otsu: each map's own Otsu threshold", "choices": THRESHOLD_MODES})
    tau: float | None = field(metadata={"help": "the threshold of mode fixed, in [0, 1)"})
    map_class: str = field(metadata={
        "help": "whose map a class-dependent map (CAM, TeD-Loc's class map, CLIP) is: true, the true class's "
                "(GT-known, as wsolevaluation and the papers; the predicted class's is scored beside it as "
                "KIND@pred), or pred, the predicted class's (no label used); Top-1/5 Loc use the prediction "
                "either way", "choices": MAP_CLASSES})
    map_size: int | None = field(metadata={
        "help": "side of the square the maps are resized to (bicubic) and scored at, boxes rescaled to it "
                "(none: the model's input size; wsolevaluation 224, the TeD-Loc paper 256)"})
    iou_thresholds: tuple[int, ...] = field(metadata={"help": "IoU thresholds in percent of BoxAcc and "
                                                              "MaxBoxAccV2 (50 is MaxBoxAcc's)"})

    def __post_init__(self):
        if not 0 < self.interval < 1:
            raise OptionError(f"the threshold interval must be in (0, 1), got {self.interval}")
        if self.mode not in THRESHOLD_MODES:
            raise OptionError(f"unknown threshold mode {self.mode!r}; choose from {', '.join(THRESHOLD_MODES)}")
        if self.mode == "fixed" and (self.tau is None or not 0 <= self.tau < 1):
            raise OptionError("fixed mode needs a threshold tau in [0, 1)")
        if self.map_class not in MAP_CLASSES:
            raise OptionError(f"map_class must be one of {', '.join(MAP_CLASSES)}, got {self.map_class!r}")
        if self.map_size is not None and self.map_size < 1:
            raise OptionError(f"the map size must be a positive number of pixels, got {self.map_size}")
        object.__setattr__(self, "iou_thresholds", tuple(int(t) for t in self.iou_thresholds))
        if 50 not in self.iou_thresholds:
            raise OptionError("iou_thresholds must include 50 (MaxBoxAcc is defined at IoU 0.5)")

    def replace(self, **changes) -> "EvalProtocol":
        """This record with ``changes`` (field names only; an unknown one is an :class:`OptionError`)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise OptionError(f"unknown evaluation setting(s) {', '.join(unknown)}; the settings are "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def thresholds(self) -> np.ndarray:
        """The CAM thresholds of the curves: ``np.arange(0, 1, interval)`` (float64, 1.0 excluded)."""
        return threshold_list(self.interval)

    def to_dict(self) -> dict:
        """The record as JSON values: the key of cached results and the metrics' conventions block."""
        return {**dataclasses.asdict(self), "iou_thresholds": list(self.iou_thresholds)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "evaluation protocol") -> "EvalProtocol":
        """The record of :meth:`to_dict`'s dict (a missing or unknown key is an :class:`OptionError` naming
        ``where``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            raise OptionError(f"{where}: expected the keys {', '.join(sorted(names))}")
        return cls(**d)


EVAL_PROTOCOLS: Registry[EvalProtocol] = Registry("evaluation protocol")
EVAL_PROTOCOLS.register("standard")(EvalProtocol(interval=0.001, mode="oracle", tau=None, map_class="true",
                                                 map_size=None, iou_thresholds=(30, 50, 70)))
EVAL_PROTOCOLS.register("validation")(EVAL_PROTOCOLS.get("standard").replace(interval=0.01))


def eval_protocol(spec: "EvalProtocol | str" = "standard", **changes) -> EvalProtocol:
    """The record of ``spec`` (a record, or a preset name of :data:`EVAL_PROTOCOLS`) with ``changes``."""
    protocol = EVAL_PROTOCOLS.get(spec) if isinstance(spec, str) else spec
    if not isinstance(protocol, EvalProtocol):
        raise OptionError(f"expected an EvalProtocol or a preset name, got {type(spec).__name__}")
    return protocol.replace(**changes) if changes else protocol
