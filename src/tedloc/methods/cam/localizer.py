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

__all__ = ["CAMLocalizer", "build_cam_network", "classifier_reference"]


class CAMLocalizer(NetworkLocalizer):
    """A trained classifier used as a localizer through its class activation maps."""

    map_kind = "cam"
    map_kinds = ("cam",)
    class_map_kinds = ("cam",)


    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax class probabilities and the CAM of the predicted class."""
        self.model.eval()
        with self.runtime.autocast():
            cams, logits = cam_and_logits(self.model, self.runtime.to_device(images))
        return logits.float().softmax(dim=1), cams.float()

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] = map_kinds,
                     classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and, from the same forward pass, the CAM of ``classes`` (``cam``; the predicted
        classes when None) and of the predicted classes (``cam@pred``)."""
        self.model.eval()
        targets = {"cam": classes, "cam" + PRED_SUFFIX: None}
        with self.runtime.autocast():
            cams, logits = cams_of_targets(self.model, self.runtime.to_device(images),
                                           {k: targets[k] for k in kinds})
        return logits.float().softmax(dim=1), {k: m.float() for k, m in cams.items()}

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
