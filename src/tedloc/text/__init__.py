"""Class anchors from text: prompt templates, text encoders (open_clip, Hugging Face CLIP,
sentence-transformers, precomputed files) and QR orthogonalisation."""
from tedloc.text.anchors import LIFTS, TEMPLATES, TextAnchors, build_anchors, mean_abs_cos, orthogonalize
from tedloc.text.encoders import DEFAULT_TEXT_ENCODER, create_text_encoder, list_text_backends, register_text_backend

__all__ = ["TextAnchors", "build_anchors", "orthogonalize", "mean_abs_cos", "TEMPLATES", "LIFTS",
           "create_text_encoder", "register_text_backend", "list_text_backends", "DEFAULT_TEXT_ENCODER"]
