"""DiPS as a localizer: class from the frozen class-token classifier f_c, map = the decoder's foreground
probability (thesis §2.3.4: one forward pass, no label). Runs of kind ``dips`` hold the whole network."""
from __future__ import annotations

import torch

from tedloc.methods.base import NetworkLocalizer
from tedloc.models.dips import DiPSNet

__all__ = ["DiPSLocalizer", "build_dips_network"]


class DiPSLocalizer(NetworkLocalizer):
    """DiPS at inference: class probabilities from f_c, the map ``fg`` = softmax(f_l)[foreground]."""

    map_kind = "fg"
    model: DiPSNet

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities (B, K) and foreground maps (B, H, W) in [0, 1]."""
        self.model.eval()
        with self.runtime.autocast():
            out = self.model(self.runtime.to_device(images))
        return out["logits"].float().softmax(dim=1), out["fg"].float()


def build_dips_network(config, num_classes: int, weights: dict | None = None) -> DiPSNet:
    """The network of a DiPS run's config, random weights (the ViT's come from the run)."""
    from tedloc.models.encoders import create_encoder

    return DiPSNet(create_encoder(config.encoder, img_size=config.input_size), num_classes, config.n_blocks)
