"""``--target-layer``: the layer of a classifier run's post-hoc maps (Grad-CAM, Score-CAM, Eigen-CAM, ...)."""
from __future__ import annotations

import argparse

__all__ = ["add_target_layer_argument", "POSTHOC_MAPS_HELP"]

POSTHOC_MAPS_HELP = ("a classifier run (cam, nlccam) also offers the post-hoc maps gradcam, gradcam++, "
                     "smoothgradcam++, xgradcam, layercam, scorecam and eigencam")


def add_target_layer_argument(parser: argparse.ArgumentParser) -> None:
    """``--target-layer PATH`` (default: the architecture's layer)."""
    parser.add_argument("--target-layer", metavar="PATH",
                        help="the module path the post-hoc maps are computed on, e.g. stages.2, layer4, "
                             "blocks.11.norm1 (default: a CNN's last feature stage, a ViT's last block's norm1)")
