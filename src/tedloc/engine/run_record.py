"""What a finished run's ``model.json`` holds, as one typed record written and read in one place.

    record = RunFolder(path).record()     # read (a bad file is one line naming it)
    run.save_model(model, record)         # written with the weights (model.safetensors + model.json)
    run.store_threshold(0.31, source)     # the operating threshold, chosen later

The JSON stays flat (``kind``, ``config``, ``class_names``, ``preprocessing``, ``threshold``, ...): the
method's own entries (TeD-Loc's ``anchors``, DiPS's ``proposals``, ...) sit beside the common ones and
are kept in :attr:`RunRecord.extra`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError

__all__ = ["RunRecord"]


@dataclass
class RunRecord:
    """A finished run: what made it and what inference needs besides the weights.

    Attributes:
        kind: the method's run kind (how :func:`tedloc.methods.load_model` finds the method).
        config: the method's hyper-parameters (its config dataclass as a dict).
        class_names: one per class index.
        preprocessing: the record of what the model expects of an image (None: a run older than the record).
        threshold: the stored operating threshold of the map (None: none stored).
        threshold_source: what the threshold was chosen on (split, boxes, criterion).
        selection: the model selection criterion (``loc``, ``pseudo:FILE``, ``cls``, ``last``).
        selected_epoch: the epoch kept (1-based).
        history: one dict per epoch (the ``metrics.csv`` rows).
        extra: the method's own entries.
    """

    kind: str
    config: dict
    class_names: list[str]
    preprocessing: Preprocessing | None = None
    threshold: float | None = None
    threshold_source: dict | None = None
    selection: str | None = None
    selected_epoch: int | None = None
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    def to_dict(self) -> dict:
        """The JSON of ``model.json``: the common entries, then the method's own."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["preprocessing"] = None if self.preprocessing is None else self.preprocessing.to_dict()
        clash = sorted(set(self.extra) & set(out))
        if clash:
            raise ValueError(f"the method's entries {clash} would replace the record's own")
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: dict, where: str = "model.json") -> "RunRecord":
        """The record of a ``model.json`` dict (a missing ``kind`` or ``class_names``, or a bad preprocessing
        record, is a :class:`TedlocError` naming ``where``)."""
        if not isinstance(d, dict):
            raise TedlocError(f"{where}: expected a JSON object")
        missing = [k for k in ("kind", "class_names") if k not in d]
        if missing:
            raise TedlocError(f"{where}: no {' or '.join(missing)} (not a model.json of tedloc)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: d[k] for k in names if k in d}
        if values.get("config") is None:  # a record without its config (older runs)
            values["config"] = {}
        if values.get("preprocessing") is not None:
            values["preprocessing"] = Preprocessing.from_dict(values["preprocessing"], where=f"{where}: preprocessing")
        return cls(**values, extra={k: v for k, v in d.items() if k not in names})
