"""``--clip``, ``--clip-pretrained``, ``--input-size``, ``--templates``: the options of every command that builds a
training-free CLIP localizer (``tedloc evaluate --method``, ``tedloc cams --source``; ``tedloc pseudo-boxes
--method clip`` takes the first two)."""
from __future__ import annotations

import argparse

__all__ = ["add_clip_arguments", "add_clip_model_arguments", "training_free_from_args"]


def add_clip_model_arguments(parser: argparse.ArgumentParser, used_by: str = "the training-free localizers") -> None:
    """Add ``--clip`` and ``--clip-pretrained`` (the paper's ViT-B/16 with OpenAI's weights by default)."""
    parser.add_argument("--clip", default="ViT-B-16", metavar="NAME",
                        help=f"open_clip architecture of {used_by} (default ViT-B-16, the paper's)")
    parser.add_argument("--clip-pretrained", default="openai", metavar="TAG|FILE",
                        help="its weights: an open_clip tag (fetched once, needs network), a local weight file, or "
                             "'random' (tests: the numbers mean nothing) (default openai)")


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the CLIP model options, the input size and the prompt templates of a training-free localizer."""
    add_clip_model_arguments(parser)
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="side of the square view CLIP sees, rounded up to a multiple of the patch "
                             "(default: the model's, 224 for ViT-B-16)")
    parser.add_argument("--templates", default="imagenet80",
                        help="prompts of the zero-shot classifier and of the clip/sclip/naclip maps: imagenet80 "
                             "(OpenAI's 80), photo, ensemble, origami (default imagenet80); CLIP-ES's maps always "
                             "use 'a clean origami {}.'")


def training_free_from_args(name: str, class_names: list[str], args: argparse.Namespace, runtime):
    """The training-free localizer ``name`` (a method of kind ``training-free``) for ``class_names`` with the
    parsed CLIP options."""
    from tedloc.methods import get_method

    return get_method(name).create(class_names, runtime=runtime, clip=args.clip, clip_pretrained=args.clip_pretrained,
                                   input_size=args.input_size, templates=args.templates)
