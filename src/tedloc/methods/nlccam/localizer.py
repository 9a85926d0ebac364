"""NL-CCAM at inference: class = the classifier's prediction, map = the combinational CAM (``ccam``); the plain
CAM of its classifier and the CAM family's post-hoc maps are offered too."""
from __future__ import annotations

import torch

from tedloc.methods.cam.localizer import CAMLocalizer
from tedloc.methods.nlccam.combination import CLASS_COMBINATIONS, combinational_cams
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.pseudolabels.cam_family import GRADIENT_CAMS

__all__ = ["NLCCAMLocalizer"]


class NLCCAMLocalizer(CAMLocalizer):
    """An NL-CCAM classifier (:func:`~tedloc.methods.nlccam.network.build_nlccam_classifier`) as a localizer: its
    map (``ccam``) combines the CAMs of all classes by their rank, with the model's ``ccam`` settings
    ``(combination, positive_fraction)``."""

    map_kind = "ccam"
    map_kinds = ("ccam", "cam", *GRADIENT_CAMS)
    scored_map_kinds = ("ccam", "cam")

    @property
    def class_map_kinds(self) -> tuple[str, ...]:
        """The maps of a given class: the CAM and the post-hoc ones, and ``ccam`` when its combination is of the
        class (``t1b1``, ``t1b0``); ``quadratic`` and ``linear`` depend on the ranking only."""
        own = ("ccam",) if self.model.ccam[0] in CLASS_COMBINATIONS else ()
        return (*own, *CAMLocalizer.class_map_kinds)

    def _ccam(self, images: torch.Tensor, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the combinational CAMs of ``classes``, the logits) from one forward pass."""
        self.model.eval()
        combination, fraction = self.model.ccam
        with self.runtime.autocast():
            features = self.model.forward_features(self.runtime.to_device(images))
            logits = self.model.forward_head(features)
        maps = combinational_cams(features, self.model.get_classifier().weight, logits, classes, combination, fraction)
        return maps, logits.float()

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax class probabilities and the map (:attr:`map_kind`: the combinational CAM, or another kind)."""
        if self.map_kind != "ccam":
            return super().predict(images)
        maps, logits = self._ccam(images, None)
        return logits.softmax(dim=1), maps

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] = map_kinds,
                     classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and the maps of ``kinds``: ``ccam`` (of ``classes`` for ``t1b1`` / ``t1b0``) and
        ``ccam@pred``, and the CAM's kinds (:meth:`CAMLocalizer.predict_maps`)."""
        own = [k for k in kinds if k.removesuffix(PRED_SUFFIX) == "ccam"]
        others = tuple(k for k in kinds if k not in own)
        maps: dict[str, torch.Tensor] = {}
        scores = None
        for kind in own:  # the scores of the combinational CAM's forward pass, as predict gives them
            target = None if kind.endswith(PRED_SUFFIX) else classes
            maps[kind], logits = self._ccam(images, None if target is None else self.runtime.to_device(target))
            scores = logits.softmax(dim=1)
        if others or scores is None:
            cam_scores, cam_maps = super().predict_maps(images, others or ("cam",), classes)
            maps.update({k: cam_maps[k] for k in others})
            scores = cam_scores if scores is None else scores
        return scores, maps

    @torch.no_grad()
    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Combinational CAMs for the given classes (used by ``t1b1`` / ``t1b0``), or the predicted ones."""
        return self._ccam(images, None if classes is None else self.runtime.to_device(classes))[0]
