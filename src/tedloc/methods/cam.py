"""The CAM baseline (Zhou et al. 2016) as a WSOL method: class = the classifier's prediction,
map = the CAM of the predicted class. Its runs are made by ``tedloc pretrain`` (kind ``classifier``)."""
from __future__ import annotations

from pathlib import Path

import torch

from tedloc.cams.cam import cam_and_logits
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.methods.base import NetworkLocalizer, register_model
from tedloc.models.classifier import build_classifier
from tedloc.utils.device import Runtime

__all__ = ["CAMLocalizer"]


class CAMLocalizer(NetworkLocalizer):
    """A trained classifier used as a localizer through its class activation maps."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], input_size: int,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), runtime: Runtime = Runtime()):
        super().__init__(model, class_names, input_size, mean, std, runtime)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        with self.runtime.autocast():
            cams, logits = cam_and_logits(self.model, self.runtime.to_device(images))
        return logits.float().softmax(dim=1), cams.float()

    @torch.no_grad()
    def cams(self, images: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """CAMs for the given classes (the true ones for pseudo-labels), or the predicted ones."""
        self.model.eval()
        with self.runtime.autocast():
            return cam_and_logits(self.model, self.runtime.to_device(images), classes)[0].float()


@register_model("classifier")
def _load(run: Path, meta: dict, checkpoint: Path | None = None, runtime: Runtime = Runtime()) -> CAMLocalizer:
    state, _, _ = load_checkpoint(checkpoint or run / "model")
    model = build_classifier(meta["arch"], meta["num_classes"])
    model.load_state_dict(state)
    pre = meta["preprocessing"]
    return CAMLocalizer(model, meta["class_names"], pre["input_size"], pre["mean"], pre["std"], runtime)
