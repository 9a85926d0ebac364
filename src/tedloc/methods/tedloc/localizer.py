"""TeD-Loc as a localizer: class = argmax <h, t_k>, map = g's foreground probability (or <z_p, t_c>).
Runs of kind ``tedloc`` hold the whole model (encoder, decoder, g, anchors) in ``model.safetensors``."""
from __future__ import annotations

from pathlib import Path

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.run_folder import RunFolder
from tedloc.errors import OptionError
from tedloc.methods.base import NetworkLocalizer, recorded_preprocessing
from tedloc.models.localizer import PRED_SUFFIX
from tedloc.models.tedloc import TeDLoc
from tedloc.utils.device import Runtime

__all__ = ["TeDLocLocalizer", "load_tedloc_run"]


class TeDLocLocalizer(NetworkLocalizer):
    """TeD-Loc at inference: class = argmax <h, t_k>, map = g's foreground probability (``g``) or
    <z_p, t_c> of the predicted class (``class``)."""

    map_kinds = ("g", "class")
    class_map_kinds = ("class",)

    def __init__(self, model: TeDLoc, class_names: list[str], map_kind: str = "g",
                 preprocessing: Preprocessing | None = None, runtime: Runtime = Runtime()):
        if map_kind not in self.map_kinds:
            raise OptionError("map_kind must be 'g' or 'class'")
        super().__init__(model, class_names, preprocessing, runtime)
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


def load_tedloc_run(run: RunFolder, meta: dict, checkpoint: Path | None = None,
                    runtime: Runtime = Runtime()) -> TeDLocLocalizer:
    """A TeD-Loc run's model (or one epoch's head on its frozen encoder and anchors) as a localizer."""
    from tedloc.models.encoders import create_encoder

    state, _, _ = load_checkpoint(run.model_stem)
    config = meta["config"]
    encoder = create_encoder(config["encoder"], img_size=config["input_size"])  # weights come from the run
    # E trained by a `tedloc pretrain` run: its record is the truth; timm's or a file's weights: timm's config
    preprocessing = recorded_preprocessing(run, meta, None if config.get("encoder_run") else encoder.preprocessing)
    model = TeDLoc(encoder, state["anchors"], tuple(config["decoder_channels"]), config.get("logit", "dot"),
                   config.get("logit_scale", 1.0), preprocessing)
    model.load_state_dict(state)
    if checkpoint is not None:  # epoch checkpoints hold the head only (E and the anchors are frozen)
        model.head.load_state_dict(load_checkpoint(checkpoint)[0])
    return TeDLocLocalizer(model, meta["class_names"], "g", preprocessing, runtime)
