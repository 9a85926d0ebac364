"""``tedloc anchors``: class anchors from text for a dataset's class names."""
from __future__ import annotations

import argparse

from tedloc.cli.commands import command
from tedloc.cli.runtime_args import add_runtime_arguments, runtime_from_args
from tedloc.data import load_dataset
from tedloc.text import DEFAULT_TEXT_ENCODER, LIFTS, TEMPLATES, build_anchors


def _anchors(args: argparse.Namespace) -> int:
    names = load_dataset(args.data, splits=[]).class_names
    templates = args.template or args.templates
    anchors = build_anchors(names, args.text_encoder, templates, orthogonalize_anchors=not args.no_orthogonalize,
                            lift=args.lift, device=str(runtime_from_args(args).device))
    anchors.save(args.out)
    s = anchors.stats
    print(f"{len(names)} classes, text dim {s['text_dim']} -> anchor dim {s['anchor_dim']}; "
          f"mean |cos| between classes: {s['mean_abs_cos_raw']:.4f} raw, {s['mean_abs_cos_anchors']:.4f} anchors")
    print(f"wrote {args.out}")
    return 0


@command("anchors", help="class anchors from text (QR-orthogonalised text embeddings)")
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``tedloc anchors``."""
    parser.add_argument("--data", required=True, help="dataset directory (its class_names.txt)")
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER,
                        help="sentence-transformers:<model>, open_clip:<arch>@<pretrained>, hf-clip:<model>, "
                             "file:<path> (default: the offline %(default)s)")
    parser.add_argument("--templates", default="photo", choices=sorted(TEMPLATES), help="prompt template set")
    parser.add_argument("--template", action="append", help="a custom template with '{}' (repeatable)")
    parser.add_argument("--no-orthogonalize", action="store_true", help="keep the raw text embeddings")
    parser.add_argument("--lift", choices=LIFTS, default="full", help="rule when classes outnumber dimensions")
    parser.add_argument("--out", required=True, help="anchor file (.safetensors)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_anchors)
