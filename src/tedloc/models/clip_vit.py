"""An open_clip ViT opened up for dense maps: any input size, per-block attention, the text side.

:func:`load_clip` creates an open_clip model by name and weights (a tag of
``open_clip.list_pretrained()``, fetched once with network access, a local weight file, or
``random``: seeded random weights, for tests) and answers bad input with one line. :class:`ClipTower` runs its image
tower block by block on images of any size that is a multiple of the patch (the position
embeddings of the patch grid are interpolated, the class token's kept), returns the head-averaged
attention of the blocks asked for, and reads tokens out through ``ln_post`` and the projection.
CLIP-ES and the training-free localizers (``tedloc.pseudolabels``) are built on it.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data.preprocessing import Preprocessing
from tedloc.errors import TedlocError
from tedloc.weights import loading_weights

__all__ = ["ClipSpec", "ClipTower", "load_clip", "create_open_clip", "open_clip_quick_gelu"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP: an open_clip architecture name and its weights (a tag, a local file, or ``random``)."""

    name: str = "ViT-B-16"
    pretrained: str = "openai"

    def to_dict(self) -> dict:
        """The record stored with maps and boxes made from this model."""
        weights = self.pretrained
        if weights not in ("", "random") and os.path.isfile(weights):
            weights = str(Path(weights).resolve())
        return {"clip": self.name, "clip_pretrained": weights}

    def __str__(self) -> str:
        return f"{self.name}@{self.pretrained}"


def _check_name(name: str) -> None:
    import open_clip

    models = open_clip.list_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see open_clip.list_models()"
        raise TedlocError(f"unknown open_clip model {name!r}{hint}")


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs every step of a model's creation on the root logger (and warns of random weights, which
    tedloc says itself): keep that out of tedloc's output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def open_clip_quick_gelu(arch: str, tag: str) -> bool:
    """Whether open_clip's weights ``tag`` of ``arch`` were trained with QuickGELU (OpenAI's were): open_clip >= 2.26
    builds e.g. "ViT-B-16" with GELU unless told, which silently gives another network."""
    import open_clip

    return bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))


def create_open_clip(spec: ClipSpec) -> nn.Module:
    """The open_clip model of ``spec`` (a tag's weights from the cache or fetched first, a local file, OpenAI's
    release file, or seeded random weights), or one line saying what is wrong."""
    if spec.pretrained in ("", "random"):
        _logger.warning("open_clip %s with random weights (maps and numbers mean nothing)", spec.name)
    with _quiet_open_clip():
        return _create_model(spec)


def _create_model(spec: ClipSpec) -> nn.Module:
    import open_clip

    _check_name(spec.name)
    weights = spec.pretrained
    if weights in ("", "random"):
        with torch.random.fork_rng(devices=[]):  # seeded: the same weights in every process and on resume
            torch.manual_seed(0)
            return open_clip.create_model(spec.name, pretrained=None)
    if os.path.isfile(weights):
        if _is_torchscript(weights):  # OpenAI's own release file (ViT-B-16.pt, what CLIP-ES loads): QuickGELU
            return _openai_file(spec, weights)
        try:  # an open_clip state dict: OpenAI's weights in that form need the -quickgelu name (ViT-B-16-quickgelu)
            return open_clip.create_model(spec.name, pretrained=weights)
        except Exception as e:  # open_clip reports a misfit as RuntimeError, KeyError, AssertionError, ...
            raise TedlocError(f"{weights}: these weights do not fit open_clip {spec.name} ({_reason(e)})") from None
    tags = open_clip.list_pretrained_tags_by_model(spec.name)
    if weights not in tags:
        known = ", ".join(tags) if tags else "none"
        raise TedlocError(f"unknown weights {weights!r} for open_clip {spec.name} (known tags: {known}; "
                          f"or give a local weight file)")
    with loading_weights(f"open_clip:{spec.name}@{weights}"):  # in the cache before, or one line naming them
        try:
            return open_clip.create_model(spec.name, pretrained=weights,
                                          force_quick_gelu=open_clip_quick_gelu(spec.name, weights))
        except Exception as e:  # a file in the cache that does not load
            raise TedlocError(f"open_clip {spec.name}@{weights}: the weights in the cache do not load "
                              f"({type(e).__name__}: {_reason(e)})") from None


def _reason(e: Exception) -> str:
    """An exception's text on one line, at most 200 characters (its type when it has no text)."""
    text = " ".join(str(e).split())
    return (text[:197] + "...") if len(text) > 200 else (text or type(e).__name__)


def _is_torchscript(path: str) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or name.endswith("code/__torch__.py") for name in archive.namelist())


def _openai_file(spec: ClipSpec, path: str) -> nn.Module:
    """A model from OpenAI's TorchScript release file, built from its own state dict (QuickGELU)."""
    import open_clip

    try:
        model = open_clip.load_openai_model(path, device="cpu")  # built from the archive's state dict
    except Exception as e:
        raise TedlocError(f"{path}: could not read it as OpenAI's CLIP release file ({_reason(e)})") from None
    grid = getattr(model.visual, "grid_size", None)
    patch = getattr(getattr(model.visual, "conv1", None), "kernel_size", None)
    _logger.info("%s: OpenAI's release file (patch %s, grid %s), used for %s", path, patch, grid, spec.name)
    return model


def load_clip(spec: ClipSpec, device: str | torch.device = "cpu") -> "ClipTower":
    """The :class:`ClipTower` of ``spec`` on ``device``, in eval mode, frozen."""
    try:
        import open_clip
    except ImportError:
        raise TedlocError("CLIP models need open_clip (pip install open_clip_torch)") from None
    model = create_open_clip(spec)
    with _quiet_open_clip():
        tokenizer = open_clip.get_tokenizer(spec.name)
    return ClipTower(model, tokenizer, spec).to(device)


class ClipTower(nn.Module):
    """An open_clip CLIP whose ViT image tower runs block by block (see the module docstring).

    Args:
        model: an open_clip ``CLIP`` with a ``VisionTransformer`` image tower of learnable position
            embeddings and ``nn.MultiheadAttention`` blocks (the OpenAI and LAION ViTs).
        tokenizer: its tokenizer.
        spec: what it was loaded from (recorded with the maps).
    """

    def __init__(self, model: nn.Module, tokenizer, spec: ClipSpec = ClipSpec()):
        super().__init__()
        visual = getattr(model, "visual", None)
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None or not hasattr(visual, "conv1"):
            raise TedlocError(f"open_clip {spec.name}: dense CLIP maps need a ViT image tower (conv1 patches + "
                              f"transformer blocks), not {type(visual).__name__}")
        if not all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks):
            raise TedlocError(f"open_clip {spec.name}: its blocks do not use nn.MultiheadAttention (not supported)")
        if getattr(visual, "attn_pool", None) is not None or visual.positional_embedding.ndim != 2:
            raise TedlocError(f"open_clip {spec.name}: attentional pooling / non-learnable position embeddings "
                              f"are not supported")
        for p in model.parameters():  # frozen: gradients only ever flow to activations (Grad-CAM)
            p.requires_grad_(False)
        self.model = model.eval()
        self.visual = visual
        self.blocks = blocks
        self.tokenizer = tokenizer
        self.spec = spec
        self.patch_size = tuple(int(p) for p in visual.conv1.kernel_size)
        self.grid_size = tuple(int(g) for g in visual.grid_size)

    # ----------------------------------------------------------------- image side
    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.visual.conv1.weight.device

    @property
    def num_blocks(self) -> int:
        """The number of transformer blocks of the image tower."""
        return len(self.blocks)

    def preprocessing(self, input_size: int | None = None) -> Preprocessing:
        """The record of its weights (open_clip's mean, std and interpolation) at ``input_size`` (default:
        the model's own), rounded up to a multiple of the patch as CLIP-ES does."""
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = int(input_size or cfg.get("size", (224, 224))[0])
        patch = self.patch_size[0]
        size = -(-size // patch) * patch
        interpolation = cfg.get("interpolation", "bicubic")
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)  # open_clip's default for configs without one
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        return Preprocessing(size, mean=tuple(mean), std=tuple(std),
                             interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bicubic")

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid of an image of ``height`` x ``width`` (one-line errors for sizes it cannot take)."""
        ph, pw = self.patch_size
        if height < ph or width < pw:
            raise TedlocError(f"an image of {width}x{height} is smaller than one {pw}x{ph} patch of {self.spec.name}")
        if height % ph or width % pw:
            raise TedlocError(f"an image of {width}x{height} is not a multiple of the {pw}x{ph} patch of "
                              f"{self.spec.name}; resize it up to the next multiple (what CLIP-ES does)")
        return height // ph, width // pw

    def position_embedding(self, grid: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
        """The position embeddings ``(1 + gh * gw, D)`` for a patch grid: the trained grid interpolated
        (``mode``, corners not aligned) when it differs, the class token's entry unchanged."""
        pos = self.visual.positional_embedding
        if tuple(grid) == self.grid_size:
            return pos
        first, rest = pos[:1], pos[1:]
        gh, gw = self.grid_size
        rest = rest.T.reshape(1, -1, gh, gw)
        rest = F.interpolate(rest.float(), size=tuple(grid), mode=mode, align_corners=False).to(pos.dtype)
        return torch.cat([first, rest.reshape(pos.shape[1], -1).T], dim=0)

    def embed(self, images: torch.Tensor, pos_mode: str = "bilinear") -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens ``(B, 1 + n, D)`` entering the first block, and the patch grid ``(gh, gw)``."""
        grid = self.token_grid(*images.shape[-2:])
        visual = self.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.position_embedding(grid, pos_mode).to(x.dtype)
        return visual.ln_pre(x), grid

    @staticmethod
    def attention(block: nn.Module, x: torch.Tensor, need_weights: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``block``'s attention on ``x`` (already through ``ln_1``), batch first, and its head-averaged
        weights ``(B, T, T)`` when asked."""
        attn: nn.MultiheadAttention = block.attn
        if not attn.batch_first:
            x = x.transpose(0, 1)
        out, weights = attn(x, x, x, need_weights=need_weights, average_attn_weights=True)
        if not attn.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def block(self, index: int, x: torch.Tensor, need_weights: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block ``index`` as trained (attention and MLP with their residuals) and its attention weights."""
        block = self.blocks[index]
        out, weights = self.attention(block, block.ln_1(x), need_weights)
        x = x + block.ls_1(out)
        return x + block.ls_2(block.mlp(block.ln_2(x))), weights

    def run_blocks(self, x: torch.Tensor, stop: int, weights_from: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks ``0 .. stop-1`` on ``x``; with ``weights_from``, also the mean of the attention weights of
        blocks ``weights_from .. stop-1`` (computed only for those)."""
        total = None
        for i in range(stop):
            want = weights_from is not None and i >= weights_from
            x, w = self.block(i, x, need_weights=want)
            if want:
                total = w.float() if total is None else total + w.float()
        count = stop - weights_from if weights_from is not None else 0
        return x, (total / count if total is not None else None)

    def readout(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then the projection, token by token, in float32 whatever the autocast around it:
        ``(B, T, D) -> (B, T, E)``."""
        with torch.autocast(tokens.device.type, enabled=False):
            x = self.visual.ln_post(tokens.float())
            return x @ self.visual.proj.float() if self.visual.proj is not None else x

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The model's own image embedding from the last block's output, L2-normalised, float32: its class
        token, or for towers pooled by average the mean of the patch tokens (``ln_post`` before the mean,
        or after it with ``final_ln_after_pool``, as open_clip)."""
        visual = self.visual
        if getattr(visual, "pool_type", "tok") != "avg":
            x = self.readout(tokens[:, :1])[:, 0]
        elif getattr(visual, "final_ln_after_pool", False):
            x = self.readout(tokens[:, 1:].mean(dim=1, keepdim=True))[:, 0]
        else:
            x = self.readout(tokens[:, 1:]).mean(dim=1)
        return F.normalize(x, dim=-1)

    def class_probabilities(self, tokens: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
        """CLIP's zero-shot class probabilities ``(B, K)`` from the last block's output: softmax of
        ``exp(logit_scale)`` x the cosine of :meth:`pooled` with the L2-normalised class rows ``(K, E)``, in float32."""
        with torch.autocast(tokens.device.type, enabled=False):
            return (self.logit_scale * self.pooled(tokens) @ class_text.float().T).softmax(dim=-1)

    @property
    def logit_scale(self) -> float:
        """The trained temperature, ``exp(logit_scale)`` (100 for OpenAI's CLIP)."""
        return float(self.model.logit_scale.exp())

    # ----------------------------------------------------------------- text side
    def check_class_names(self, class_names: list[str]) -> None:
        """Refuse a class name that tokenises to nothing (one line naming it)."""
        encode = getattr(self.tokenizer, "encode", None)
        for k, name in enumerate(class_names):
            empty = not str(name).strip()
            if not empty and encode is not None:
                try:
                    empty = len(encode(str(name))) == 0
                except Exception:  # a tokenizer without a plain encode: judge by the stripped text
                    pass
            if empty:
                raise TedlocError(f"class {k} ({name!r}) tokenises to nothing: CLIP cannot prompt it; rename it")

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``model.encode_text(tokens)``, computed on the tokens up to the last end token of the batch only.

        CLIP's text tower is causal and pools the end token, so the padding after it never changes the
        result: a prompt of 10 tokens costs 10, not the context length's 77 (5-8x faster for class prompts).
        Towers of another kind fall back to ``encode_text``.
        """
        m = self.model
        causal = (getattr(m, "text_pool_type", None) == "argmax" and getattr(m, "attn_mask", None) is not None
                  and hasattr(m, "token_embedding") and hasattr(m, "ln_final"))
        if not causal:
            return m.encode_text(tokens)
        length = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :length]
        x = m.token_embedding(tokens) + m.positional_embedding[:length]
        batch_first = getattr(m.transformer, "batch_first", True)  # open_clip < 2.26 runs (L, N, D) here
        x = m.transformer(x if batch_first else x.transpose(0, 1), attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x if batch_first else x.transpose(0, 1))
        x = x[torch.arange(len(x), device=x.device), tokens.argmax(dim=-1)]
        projection = m.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    @torch.no_grad()
    def text_embeddings(self, names: list[str], templates: list[str], batch_size: int = 256) -> torch.Tensor:
        """One L2-normalised row per name: each template's embedding normalised, averaged, normalised again
        (CLIP's zero-shot recipe); always float32, whatever the autocast around the call."""
        self.check_class_names(names)
        rows = []
        for template in templates:
            texts = [template.format(name) for name in names]
            with torch.autocast(self.device.type, enabled=False):
                parts = [self.encode_tokens(self.tokenizer(texts[i:i + batch_size]).to(self.device)).float()
                         for i in range(0, len(texts), batch_size)]
            rows.append(F.normalize(torch.cat(parts), dim=-1))
        return F.normalize(torch.stack(rows).mean(dim=0), dim=-1)
