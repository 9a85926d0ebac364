"""TrCAM-V as a localizer: class from the class-token classifier, map = the decoder's foreground probability (one
forward pass per frame, no label, no CLIP). Runs of kind ``trcamv`` hold the whole network."""
from __future__ import annotations

from tedloc.methods.dips.localizer import DiPSLocalizer
from tedloc.models.trcamv import TrCAMVNet

__all__ = ["TrCAMVLocalizer", "build_trcamv_network"]


class TrCAMVLocalizer(DiPSLocalizer):
    """TrCAM-V at inference: class probabilities from the classifier, the map ``fg`` = softmax(decoder)[foreground]
    (the same contract as DiPS's network: ``forward`` gives ``logits`` and ``fg``)."""

    model: TrCAMVNet


def build_trcamv_network(config, num_classes: int, weights: dict | None = None) -> TrCAMVNet:
    """The network of a TrCAM-V run's config, random weights (the ViT's come from the run)."""
    from tedloc.models.encoders import create_encoder

    return TrCAMVNet(create_encoder(config.encoder, img_size=config.input_size), num_classes, config.n_blocks)
