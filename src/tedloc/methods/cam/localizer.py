"""The CAM baseline (Zhou et al. 2016) as a localizer: class = the classifier's prediction,
map = the CAM of the predicted class. Its runs (kind ``classifier``) are made by ``tedloc pretrain``."""
from __future__ import annotations

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.methods.base import NetworkLocalizer
from tedloc.models.classifier import build_classifier
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.models.preprocessing import preprocessing_of
from tedloc.pseudolabels.cam import cam_and_logits, cams_of_targets
from tedloc.pseudolabels.cam_family import CLASS_FREE_CAMS, GRADIENT_CAMS, gradient_cams
from tedloc.pseudolabels.gradcam import find_target_layer

__all__ = ["CAMLocalizer", "build_cam_network", "classifier_reference"]


class CAMLocalizer(NetworkLocalizer):
    """A trained classifier used as a localizer through its class activation maps, and the CAM family's post-hoc
    maps (:mod:`tedloc.pseudolabels.cam_family`) on :attr:`target_layer` (None: the architecture's default)."""

    map_kind = "cam"
    map_kinds = ("cam", *GRADIENT_CAMS)
    class_map_kinds = ("cam", *[k for k in GRADIENT_CAMS if k not in CLASS_FREE_CAMS])
    # what an all-maps evaluation scores: the CAM; the CAM family's maps cost a backward pass each, asked by name
    scored_map_kinds = ("cam",)
    target_layer: str | None = None

    def set_target_layer(self, path: str | None) -> None:
        """Compute the post-hoc maps on the module of the network at the dotted ``path`` (None: the default)."""
        if path is not None:
            find_target_layer(self.model, path)
        self.target_layer = path

    def posthoc_maps(self, images: torch.Tensor, classes: torch.Tensor | None, kind: str) -> torch.Tensor:
        """The CAM family's map ``kind`` (``gradcam``, ``scorecam``, ...) of ``classes`` (None: the predicted ones)
        on :attr:`target_layer`, ``(B, H, W)`` in [0, 1] at the input resolution."""
        images = self.runtime.to_device(images).float()
        return gradient_cams(self.model, images, None if classes is None else classes.to(images.device), kind,
                             target_layer=self.target_layer)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax class probabilities and the map (:attr:`map_kind`: the CAM, or a CAM-family map) of the
        predicted class."""
        if self.map_kind != "cam":
            scores, maps = self.predict_maps(images, (self.map_kind,))
            return scores, maps[self.map_kind]
        self.model.eval()
        with self.runtime.autocast():
            cams, logits = cam_and_logits(self.model, self.runtime.to_device(images))
        return logits.float().softmax(dim=1), cams.float()

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] = map_kinds,
                     classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and, from the same forward pass, the CAM of ``classes`` (``cam``; the predicted
        classes when None) and of the predicted classes (``cam@pred``); the CAM family's gradient maps
        (:mod:`tedloc.pseudolabels.cam_family`: ``gradcam``, ``gradcam++``, ...) of the same classes, each with
        its own backward pass."""
        self.model.eval()
        images = self.runtime.to_device(images)
        targets = {"cam": classes, "cam" + PRED_SUFFIX: None}
        wanted = {k: targets[k] for k in kinds if k in targets}
        with self.runtime.autocast():
            cams, logits = cams_of_targets(self.model, images, wanted or {"cam": classes})
        maps = {k: cams[k].float() for k in wanted}
        for kind in kinds:
            base = kind.removesuffix(PRED_SUFFIX)
            if base in GRADIENT_CAMS:
                maps[kind] = self.posthoc_maps(images, None if kind.endswith(PRED_SUFFIX) else classes, base)
        return logits.float().softmax(dim=1), maps

    @torch.no_grad()
    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """CAMs for the given classes (the true ones for pseudo-labels), or the predicted ones."""
        self.model.eval()
        with self.runtime.autocast():
            return cam_and_logits(self.model, self.runtime.to_device(images), classes)[0].float()


def build_cam_network(config, num_classes: int, weights: dict | None = None) -> torch.nn.Module:
    """The classifier of a CAM run's config, random weights."""
    return build_classifier(config.arch, num_classes, input_size=config.input_size, resize_size=config.resize_size)


def classifier_reference(config, model: torch.nn.Module) -> Preprocessing | None:
    """A classifier started from timm's or a file's weights: timm's record of the architecture; trained from
    scratch here: the run's record is the truth (None)."""
    return preprocessing_of(model, config.input_size) if config.pretrained or config.encoder_weights else None
