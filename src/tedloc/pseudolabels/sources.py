"""Sources of pseudo-label maps by name (``tedloc cams --source NAME``): a registry of :class:`MapSource`.

A source turns a batch of preprocessed images (and their classes, or None for the predicted ones)
into maps ``(B, h, w)`` with a model of the capability it needs. Every built-in source (the CAM,
the CAM family's post-hoc maps of :mod:`tedloc.pseudolabels.cam_family` and the training-free CLIP localizers) is
registered in this module (and ``map``: any run's own localization map, for rounds of self-training), so importing it is
enough; ``tedloc cams`` offers whatever is registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from tedloc.errors import TedlocError
from tedloc.models.localizer import ClassConditionalMaps, ClassifierNetwork, LocalizationModel, TargetLayerMaps
from tedloc.pseudolabels.cam_family import GRADIENT_CAMS, gradient_cams
from tedloc.pseudolabels.clip_localizers import TRAINING_FREE, ClipLocalizer
from tedloc.utils.registry import Registry

__all__ = ["MapSource", "MAP_SOURCES", "register_map_source", "map_source"]


@dataclass(frozen=True)
class MapSource:
    """A way to compute class maps.

    Attributes:
        name: the name of ``tedloc cams --source``.
        description: one line for ``--help``.
        requires: the capability protocol a model needs (checked with ``isinstance``).
        maps: ``maps(model, images, classes or None) -> (B, h, w)``.
        default_size: the stored side when ``--size`` is not given (None: the maps' own resolution).
    """

    name: str
    description: str
    requires: type
    maps: Callable[[object, torch.Tensor, torch.Tensor | None], torch.Tensor]
    default_size: Callable[[object], int | None] = lambda model: None

    def check(self, model: object, where: str) -> None:
        """Refuse a model without the capability this source needs (one line naming ``where``)."""
        if not isinstance(model, self.requires):
            raise TedlocError(f"{where}: this kind of run cannot make {self.name!r} maps "
                              f"(needs {self.requires.__name__})")


MAP_SOURCES: Registry[MapSource] = Registry("map source")


def register_map_source(source: MapSource) -> MapSource:
    """Add ``source`` to :data:`MAP_SOURCES`."""
    return MAP_SOURCES.register(source.name)(source)


def map_source(name: str) -> MapSource:
    """The source registered as ``name`` (an unknown name lists the choices)."""
    return MAP_SOURCES.get(name)


def _posthoc_maps(kind: str) -> Callable[[ClassifierNetwork, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The CAM family's ``kind`` on the classifier inside a run's localizer, on its chosen target layer when it has
    one (:class:`~tedloc.models.localizer.TargetLayerMaps`), else on the architecture's default layer."""

    def maps(model: ClassifierNetwork, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        images = images.to(model.device).float()
        classes = None if classes is None else classes.to(model.device)
        layer = model.target_layer if isinstance(model, TargetLayerMaps) else None
        return gradient_cams(model.model, images, classes, kind, target_layer=layer)

    return maps


def _training_free_maps(name: str) -> Callable[[ClipLocalizer, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    def maps(model: ClipLocalizer, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        if model.map_kind != name:
            raise TedlocError(f"a {model.map_kind!r} localizer cannot make {name!r} maps")
        return model.cams(images, classes)

    return maps


register_map_source(MapSource(
    "cam", "CAM of the classifier (stored at its feature resolution)", ClassConditionalMaps,
    lambda model, images, classes: model.cams(images, classes)))
register_map_source(MapSource(
    "map", "the run's own localization map (TeD-Loc's g, DiPS's decoder; no class: the next round's pseudo-labels)",
    LocalizationModel, lambda model, images, classes: model.predict(images.to(model.device))[1]))
_POSTHOC_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "smoothgradcam++": "Smooth Grad-CAM++",
                  "xgradcam": "XGrad-CAM", "layercam": "LayerCAM", "scorecam": "Score-CAM",
                  "eigencam": "Eigen-CAM (class-free)"}
for _kind in GRADIENT_CAMS:
    register_map_source(MapSource(
        _kind, f"{_POSTHOC_NAMES.get(_kind, _kind)} (grad-cam package) on the classifier's target layer (stored at "
               f"input/4)", ClassifierNetwork, _posthoc_maps(_kind),
        lambda model: max(1, model.preprocessing.input_size // 4)))
for _name in TRAINING_FREE.names():
    register_map_source(MapSource(_name, f"{TRAINING_FREE.get(_name).description} (needs --clip, no run)",
                                  ClipLocalizer, _training_free_maps(_name)))
