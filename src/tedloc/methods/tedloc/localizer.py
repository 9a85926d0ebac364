"""TeD-Loc as a localizer: class = argmax <h, t_k>, map = g's foreground probability (or <z_p, t_c>).
Runs of kind ``tedloc`` hold the whole model (encoder, decoder, g, anchors) in ``model.safetensors``; an
epoch checkpoint holds the head."""
from __future__ import annotations

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import OptionError, TedlocError
from tedloc.methods.base import NetworkLocalizer
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.models.tedloc import TeDLoc
from tedloc.utils.device import Runtime

__all__ = ["TeDLocLocalizer", "build_tedloc_network"]


class TeDLocLocalizer(NetworkLocalizer):
    """TeD-Loc at inference: class = argmax <h, t_k>, map = g's foreground probability (``g``) or
    <z_p, t_c> of the predicted class (``class``)."""

    map_kinds = ("g", "class")
    class_map_kinds = ("class",)

    def __init__(self, model: TeDLoc, class_names: list[str], map_kind: str = "g",
                 preprocessing: Preprocessing | None = None, *, runtime: Runtime):
        if map_kind not in self.map_kinds:
            raise OptionError("map_kind must be 'g' or 'class'")
        super().__init__(model, class_names, preprocessing, runtime=runtime)
        self.map_kind = map_kind

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities and the map of :attr:`map_kind`."""
        scores, maps = self.predict_maps(images, (self.map_kind,))
        return scores, maps[self.map_kind]

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] = map_kinds,
                     classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and several maps from one forward pass; ``class`` is <z_p, t_c> of ``classes``
        (the true ones: the paper's Table 4 map) or of the predicted classes when None; ``class@pred`` of the
        predicted classes in any case."""
        self.model.eval()
        with self.runtime.autocast():
            out = self.model(self.runtime.to_device(images))
            scores = out["logits"].float().softmax(dim=1)
            predicted = scores.argmax(dim=1)
            picked = predicted if classes is None else self.runtime.to_device(classes).long()
            maps = {"g": lambda: out["fg"], "class": lambda: self.model.class_map(out["u"], picked),
                    "class" + PRED_SUFFIX: lambda: self.model.class_map(out["u"], predicted)}
            return scores, {kind: maps[kind]().float() for kind in kinds}


def build_tedloc_network(config, num_classes: int, weights: dict[str, torch.Tensor]) -> TeDLoc:
    """The network of a TeD-Loc run's config, random weights: E (its weights come from the run), the head, and
    the anchors buffer of the shape the run's ``weights`` hold."""
    from tedloc.models.encoders import create_encoder

    if "anchors" not in weights:
        raise TedlocError("a TeD-Loc model without its anchors (no tensor 'anchors' in the weights)")
    if weights["anchors"].shape[0] != num_classes:
        raise TedlocError(f"the weights hold {weights['anchors'].shape[0]} anchors for {num_classes} classes")
    encoder = create_encoder(config.encoder, img_size=config.input_size)
    return TeDLoc(encoder, torch.zeros_like(weights["anchors"]), tuple(config.decoder_channels), config.logit,
                  config.logit_scale)

