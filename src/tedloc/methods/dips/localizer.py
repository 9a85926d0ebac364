"""DiPS as a localizer: class from the frozen class-token classifier f_c, map = the decoder's foreground
probability (thesis §2.3.4: one forward pass, no label). Runs of kind ``dips`` hold the whole network."""
from __future__ import annotations

from pathlib import Path

import torch

from tedloc.engine.checkpoint import load_checkpoint
from tedloc.engine.run_folder import RunFolder
from tedloc.methods.base import NetworkLocalizer, recorded_preprocessing
from tedloc.models.dips import DiPSNet
from tedloc.utils.device import Runtime

__all__ = ["DiPSLocalizer", "load_dips_run"]


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


def load_dips_run(run: RunFolder, meta: dict, checkpoint: Path | None = None,
                  runtime: Runtime = Runtime()) -> DiPSLocalizer:
    """A DiPS run's network (or one epoch's decoder with the run's ViT and f_c) as a localizer."""
    from tedloc.methods.dips.train import DiPSTrainConfig
    from tedloc.models.encoders import create_encoder

    state, _, _ = load_checkpoint(run.model_stem)
    config = DiPSTrainConfig.from_dict(meta["config"])
    encoder = create_encoder(config.encoder, img_size=config.input_size)  # weights come from the run
    # a ViT trained by a `tedloc pretrain` run: its record is the truth; timm's or a file's weights: timm's config
    preprocessing = recorded_preprocessing(run, meta, None if config.encoder_run else encoder.preprocessing)
    net = DiPSNet(encoder, len(meta["class_names"]), config.n_blocks, preprocessing)
    net.load_state_dict(state)
    if checkpoint is not None:  # epoch checkpoints hold the decoder only
        net.decoder.load_state_dict(load_checkpoint(checkpoint)[0])
    return DiPSLocalizer(net, meta["class_names"], preprocessing, runtime)
