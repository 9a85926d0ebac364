"""The CAM baseline (Zhou et al. 2016) as a localizer: class = the classifier's prediction,
map = the CAM of the predicted class. Its runs (kind ``classifier``) are made by ``tedloc pretrain``."""
from __future__ import annotations

from pathlib import Path

import torch

from tedloc.cams.cam import cam_and_logits, cams_of_targets
from tedloc.data.preprocessing import Preprocessing
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.run_folder import RunFolder
from tedloc.methods.base import NetworkLocalizer, recorded_preprocessing
from tedloc.models.classifier import build_classifier
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.models.preprocessing import preprocessing_of
from tedloc.utils.device import Runtime

__all__ = ["CAMLocalizer", "load_cam_run"]


class CAMLocalizer(NetworkLocalizer):
    """A trained classifier used as a localizer through its class activation maps."""

    map_kind = "cam"
    map_kinds = ("cam",)
    class_map_kinds = ("cam",)

    def __init__(self, model: torch.nn.Module, class_names: list[str], preprocessing: Preprocessing | None = None,
                 runtime: Runtime = Runtime()):
        super().__init__(model, class_names, preprocessing, runtime)

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


def load_cam_run(run: RunFolder, meta: dict, checkpoint: Path | None = None,
                 runtime: Runtime = Runtime()) -> CAMLocalizer:
    """The classifier of a ``tedloc pretrain`` run (or of one of its epoch checkpoints) as a localizer."""
    state, _, _ = load_checkpoint(checkpoint or run.model_stem)
    pre, config = meta.get("preprocessing") or {}, meta.get("config") or {}
    model = build_classifier(meta["arch"], meta["num_classes"], input_size=pre.get("input_size"),
                             resize_size=pre.get("resize_size"))
    model.load_state_dict(state)
    started_from_timm = config.get("pretrained") or config.get("encoder_weights")  # else trained from scratch here
    weights = preprocessing_of(model, pre.get("input_size")) if started_from_timm else None
    return CAMLocalizer(model, meta["class_names"], recorded_preprocessing(run, meta, weights), runtime)
