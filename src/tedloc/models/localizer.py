"""What a localization model offers downstream, as typed protocols (no probing with ``hasattr``).

Evaluation, pseudo-label maps, pseudo-boxes and inference see a :class:`LocalizationModel`; the
optional capabilities are protocols of their own, checked with ``isinstance``:

- :class:`MultiMapModel`: several maps from one forward pass (TeD-Loc: ``g`` and ``class``);
- :class:`ClassConditionalMaps`: the map of any given class (CAM: the true class's, for pseudo-labels);
- :class:`ClassifierNetwork`: a classifier network inside (Grad-CAM, box confidences);
- :class:`ClassScores`: class scores alone, cheaper than :meth:`LocalizationModel.predict` (for
  evaluations whose maps are of the true class);
- :class:`TargetLayerMaps`: post-hoc maps (Grad-CAM, Score-CAM, ...) on a layer that can be chosen by its module path.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.utils.device import Runtime

__all__ = ["LocalizationModel", "MultiMapModel", "ClassConditionalMaps", "ClassifierNetwork", "ClassScores",
           "TargetLayerMaps", "map_kinds_of", "class_map_kinds", "use_map", "use_target_layer", "PRED_SUFFIX"]


@runtime_checkable
class LocalizationModel(Protocol):
    """Images in, class scores and localization maps out, no label needed."""

    class_names: list[str]
    preprocessing: Preprocessing  # what it expects of an image: every consumer asks it
    map_kind: str  # the name of the map :meth:`predict` returns

    @property
    def device(self) -> torch.device:
        """Where it runs (images are moved there)."""
        ...

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class scores (B, K), maps (B, h, w)) for images (B, 3, S, S) preprocessed by :attr:`preprocessing`."""
        ...

    def to(self, runtime: Runtime) -> "LocalizationModel":
        """Move to ``runtime``'s device and run in its precision."""
        ...


@runtime_checkable
class MultiMapModel(Protocol):
    """A model with several maps (``map_kinds``); :attr:`map_kind` picks the one :meth:`predict` returns."""

    map_kinds: tuple[str, ...]
    map_kind: str

    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...], classes: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class scores and the maps of ``kinds`` from one forward pass; the maps that depend on a class
        (``class_map_kinds``) are those of ``classes`` (B,) when given, else of the predicted classes, and
        ``KIND@pred`` (:data:`PRED_SUFFIX`) asks for such a map of the predicted classes in any case."""
        ...


@runtime_checkable
class ClassConditionalMaps(Protocol):
    """A model that gives the map of a given class (for pseudo-labels: the true one)."""

    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Maps (B, h, w) of ``classes`` (B,), or of the predicted classes when None."""
        ...


@runtime_checkable
class ClassifierNetwork(Protocol):
    """A localizer built on a classifier network (``model``: logits from images), e.g. for Grad-CAM."""

    model: torch.nn.Module
    preprocessing: Preprocessing

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        ...

    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Maps (B, h, w) of ``classes``."""
        ...


@runtime_checkable
class ClassScores(Protocol):
    """A model whose class scores come without its maps."""

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores (B, K), as :meth:`LocalizationModel.predict` gives them."""
        ...


@runtime_checkable
class TargetLayerMaps(Protocol):
    """A model whose post-hoc maps (the CAM family's) are computed on a chosen layer (None: the architecture's)."""

    target_layer: str | None

    def set_target_layer(self, path: str | None) -> None:
        """Compute the post-hoc maps on the module at the dotted ``path`` (a path naming no module: one line
        listing close names)."""
        ...


PRED_SUFFIX = "@pred"  # "cam@pred": a class-dependent map of the predicted class, beside the GT-known one


def class_map_kinds(model: LocalizationModel) -> tuple[str, ...]:
    """The maps of ``model`` that depend on a class (a CAM's; TeD-Loc's <z_p, t_c>): those scored with the
    true class under the GT-known convention. A multi-map model lists them in ``class_map_kinds``."""
    if isinstance(model, MultiMapModel):
        return tuple(getattr(model, "class_map_kinds", ()))
    return (model.map_kind,) if isinstance(model, ClassConditionalMaps) else ()


def map_kinds_of(model: LocalizationModel) -> tuple[str, ...]:
    """The maps ``model`` offers, its own first."""
    kinds = tuple(model.map_kinds) if isinstance(model, MultiMapModel) else ()
    return (model.map_kind, *[k for k in kinds if k != model.map_kind])


def use_map(model: LocalizationModel, kind: str | None, where: str) -> LocalizationModel:
    """Make ``kind`` the map :meth:`~LocalizationModel.predict` returns (None: keep the model's own);
    a kind the model does not offer is a :class:`TedlocError` naming ``where`` and the choices."""
    if kind is None or kind == model.map_kind:
        return model
    kinds = map_kinds_of(model)
    if kind not in kinds:
        raise TedlocError(f"{where}: map {kind!r} not offered; choose from {', '.join(kinds)}")
    model.map_kind = kind
    return model


def use_target_layer(model: LocalizationModel, path: str | None, where: str) -> LocalizationModel:
    """Compute ``model``'s post-hoc maps on the module at ``path`` (None: keep the architecture's default layer); a
    model without such maps, or a path naming no module, is a one-line :class:`TedlocError` naming ``where``."""
    if path is None:
        return model
    if not isinstance(model, TargetLayerMaps):
        raise TedlocError(f"{where}: --target-layer picks the layer of a classifier's post-hoc maps (Grad-CAM, "
                          f"Score-CAM, ...); this run's localizer has none")
    try:
        model.set_target_layer(path)
    except TedlocError as e:
        raise TedlocError(f"{where}: {e}") from None
    return model
