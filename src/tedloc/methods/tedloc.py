"""TeD-Loc as a localizer: class = argmax <h, t_k>, map = g's foreground probability (or <z_p, t_c>).
Runs of kind ``tedloc`` hold the whole model (encoder, decoder, g, anchors) in ``model.safetensors``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tedloc.engine.checkpoint import load_checkpoint
from tedloc.methods.base import NetworkLocalizer, register_model
from tedloc.utils.device import Runtime

if TYPE_CHECKING:
    from tedloc.models.tedloc import TeDLoc

__all__ = ["TeDLocLocalizer"]


class TeDLocLocalizer(NetworkLocalizer):
    """TeD-Loc at inference: class = argmax <h, t_k>, map = g's foreground probability (or <z_p, t_c>)."""

    map_kinds = ("g", "class")

    def __init__(self, model: TeDLoc, class_names: list[str], input_size: int, map_kind: str = "g",
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), runtime: Runtime = Runtime()):
        if map_kind not in self.map_kinds:
            raise ValueError("map_kind must be 'g' or 'class'")
        super().__init__(model, class_names, input_size, mean, std, runtime)
        self.map_kind = map_kind

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, maps = self.predict_maps(images, (self.map_kind,))
        return scores, maps[self.map_kind]

    @torch.no_grad()
    def predict_maps(self, images: torch.Tensor, kinds: tuple[str, ...] = map_kinds
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities and several maps from one forward pass; ``class`` uses the predicted class."""
        self.model.eval()
        with self.runtime.autocast():
            out = self.model(self.runtime.to_device(images))
            scores = out["logits"].float().softmax(dim=1)
            maps = {"g": lambda: out["fg"], "class": lambda: self.model.class_map(out["u"], scores.argmax(dim=1))}
            return scores, {kind: maps[kind]().float() for kind in kinds}



@register_model("tedloc")
def _load(run: Path, meta: dict, checkpoint: Path | None = None, runtime: Runtime = Runtime()) -> TeDLocLocalizer:
    from tedloc.models.encoders import create_encoder
    from tedloc.models.tedloc import TeDLoc

    state, _, _ = load_checkpoint(run / "model")
    config = meta["config"]
    encoder = create_encoder(config["encoder"], img_size=config["input_size"])  # weights come from the run
    model = TeDLoc(encoder, state["anchors"], tuple(config["decoder_channels"]), config.get("logit", "dot"),
                   config.get("logit_scale", 1.0))
    model.load_state_dict(state)
    if checkpoint is not None:  # epoch checkpoints hold the head only (E and the anchors are frozen)
        model.head.load_state_dict(load_checkpoint(checkpoint)[0])
    pre = meta["preprocessing"]
    return TeDLocLocalizer(model, meta["class_names"], pre["input_size"], "g", pre["mean"], pre["std"], runtime)
