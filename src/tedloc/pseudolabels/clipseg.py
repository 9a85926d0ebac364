"""CLIPSeg (Lüddecke & Ecker, CVPR 2022) through Hugging Face ``transformers``, opened up for training-free maps.

CLIPSeg is a frozen CLIP ViT-B/16 with a light transformer decoder: the activations of image blocks
3, 6 and 9 are reduced to ``reduce_dim`` (64) channels, the deepest is modulated (FiLM) by a prompt's
CLIP text embedding, three decoder blocks follow and a transposed convolution brings the patch grid
back to pixels. Its output is one logit per pixel for "this pixel is the prompt".

**Weights.** The Hugging Face checkpoints are the authors' released weights converted by Hugging Face
(:data:`CHECKPOINTS`, with the original file each was converted from):

- ``CIDAS/clipseg-rd64``: ``rd64-uni.pth``, i.e. ``CLIPDensePredT('ViT-B/16', reduce_dim=64)`` with a
  plain 16x16 transposed convolution, the model TrCAM-V uses (:data:`DEFAULT_CHECKPOINT`);
- ``CIDAS/clipseg-rd64-refined``: ``rd64-uni-refined.pth`` (the same with a conv + two 4x4 transposed
  convolutions), the most used one;
- ``CIDAS/clipseg-rd16``: ``rd16-uni.pth``.

Equivalence limits: the conversion was checked by Hugging Face against the original code on one image
(logit slices), not here (no weights can be downloaded on this project's machines); the original
tokenises with OpenAI's ``clip`` package and normalises images with ImageNet's mean/std at 352x352, as
the checkpoints' processor does; nothing of the original's ``rd64-uni.pth`` loading (its CLIP weights
taken from OpenAI's ``clip`` package) is reproduced: the converted checkpoints carry the whole model.

**Loading** (:func:`load_clipseg`): a Hub name or a local folder (``save_pretrained``) is read from
the local Hugging Face cache first, then downloaded once (network); without it, a one-line
:class:`~tedloc.errors.TedlocError` says what to do. ``random``: seeded random weights of the same
architecture (``ViT-B-16``: the ``rd64-uni`` config) or of a ``CLIPSegConfig`` JSON file (tests use a
tiny one). Text: the checkpoint's tokenizer when it has one, otherwise open_clip's CLIP BPE tokenizer
(shipped inside open_clip, works offline; the same CLIP vocabulary and special tokens).

**Maps** (:class:`ClipSeg`): the image tower runs once per image, its three activations are reduced
once, and the decoder then runs for every (image, prompt) pair asked for; :func:`minmax_maps` turns
logits into maps (sigmoid, min-max per map, as TrCAM-V).
"""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from tedloc.errors import TedlocError
from tedloc.utils.maps import minmax_rows
from tedloc.weights import loading_weights

__all__ = ["ARCHITECTURE", "CHECKPOINTS", "DEFAULT_CHECKPOINT", "INPUT_SIZE", "ClipSeg", "clipseg_config",
           "load_clipseg", "minmax_maps"]

_logger = logging.getLogger(__name__)

ARCHITECTURE = "ViT-B-16"  # the only backbone CLIPSeg was released with
DEFAULT_CHECKPOINT = "CIDAS/clipseg-rd64"  # = the authors' rd64-uni.pth (TrCAM-V's)
CHECKPOINTS = {"CIDAS/clipseg-rd64": "rd64-uni.pth", "CIDAS/clipseg-rd64-refined": "rd64-uni-refined.pth",
               "CIDAS/clipseg-rd16": "rd16-uni.pth"}
INPUT_SIZE = 352  # the checkpoints' processor (and the authors' code): 352x352, bilinear, ImageNet mean/std
_RANDOM = ("", "random")
_OPENAI = "openai"  # the default of --clip-pretrained: CLIPSeg on OpenAI's CLIP, i.e. DEFAULT_CHECKPOINT


def _reason(e: BaseException) -> str:
    """An exception's text on one line, at most 200 characters (its type when it has no text)."""
    text = " ".join(str(e).split())
    return (text[:197] + "...") if len(text) > 200 else (text or type(e).__name__)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise TedlocError("CLIPSeg needs Hugging Face transformers (pip install transformers)") from None
    return transformers


def clipseg_config(architecture: str = ARCHITECTURE):
    """The ``CLIPSegConfig`` of ``architecture``: ``ViT-B-16`` (the released ``rd64-uni`` model: CLIP ViT-B/16,
    ``extract_layers`` 3/6/9, ``reduce_dim`` 64, plain transposed convolution) or a JSON file of a
    ``CLIPSegConfig`` (``config.to_json_file``; ``extract_layers`` must be blocks of its image tower)."""
    transformers = _transformers()
    if architecture == ARCHITECTURE:
        # transformers' default vision config is ViT-B/32: the released models are ViT-B/16
        config = transformers.CLIPSegConfig(vision_config={"patch_size": 16}, reduce_dim=64,
                                            use_complex_transposed_convolution=False)
    elif architecture.endswith(".json") and os.path.isfile(architecture):
        try:
            config = transformers.CLIPSegConfig.from_json_file(architecture)
        except Exception as e:
            raise TedlocError(f"{architecture}: not a CLIPSegConfig JSON file ({_reason(e)})") from None
    else:
        raise TedlocError(f"unknown CLIPSeg architecture {architecture!r}: CLIPSeg was released for {ARCHITECTURE} "
                          f"only; give {ARCHITECTURE} or a CLIPSegConfig JSON file (for random weights)")
    layers = int(config.vision_config.num_hidden_layers)
    extract = [int(i) for i in config.extract_layers]
    if not extract or min(extract) < 0 or max(extract) >= layers:
        raise TedlocError(f"{architecture}: CLIPSeg's extract_layers {extract} must be blocks of its "
                          f"{layers}-block image tower (0..{layers - 1})")
    return config


def _from_pretrained(load: Callable, source: str, what: str, **kwargs):
    """``load(source)`` from a local folder, or from the Hub repository's files in the local cache (fetched first
    when missing and the network allows, else one line naming them and the fixes)."""
    with loading_weights(f"hf:{source}", needed=not os.path.isdir(source)):
        try:
            return load(source, **kwargs)
        except Exception as e:  # a folder that is not what it should be, a file the library cannot read
            raise TedlocError(f"{what} {source!r}: could not load them ({_reason(e)}); " + _WHAT_TO_DO) from None


_WHAT_TO_DO = "give a local folder saved with save_pretrained, or 'random' (tests; the maps mean nothing)"


class _Tokenizer:
    """Prompts to ``(input_ids, attention_mask)`` of the model's text length: the checkpoint's own tokenizer, or
    open_clip's CLIP tokenizer (the same BPE vocabulary, ``<start_of_text>`` 49406 / ``<end_of_text>`` 49407)."""

    def __init__(self, length: int, hf=None):
        self.length = int(length)
        self.hf = hf
        if hf is None:
            import open_clip

            self.open_clip = open_clip.get_tokenizer(ARCHITECTURE)
        self.name = "hf" if hf is not None else "open_clip"

    def encode(self, text: str) -> list[int]:
        """The tokens of ``text`` without the special ones."""
        if self.hf is not None:
            return list(self.hf(text, add_special_tokens=False)["input_ids"])
        return list(self.open_clip.encode(text))

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hf is not None:
            out = self.hf(list(texts), padding="max_length", max_length=self.length, truncation=True,
                          return_tensors="pt")
            return out["input_ids"].long(), out["attention_mask"].long()
        ids = self.open_clip(list(texts), context_length=self.length).long()  # truncated: the end token kept
        end = (ids == self.open_clip.eot_token_id).int().argmax(dim=1)
        mask = (torch.arange(self.length)[None] <= end[:, None]).long()
        return ids, mask


def _layer_call(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A CLIPSeg encoder/decoder block as ``x -> x`` without attention mask, whatever the transformers version
    (4.x: ``(x, attention_mask, causal_attention_mask)`` returning a tuple; 5.x: ``(x, attention_mask)``)."""
    legacy = "causal_attention_mask" in inspect.signature(layer.forward).parameters

    def run(x: torch.Tensor) -> torch.Tensor:
        out = layer(x, None, None) if legacy else layer(x, attention_mask=None)
        return out[0] if isinstance(out, tuple) else out

    return run


def minmax_maps(probabilities: torch.Tensor) -> torch.Tensor:
    """Each map of ``(N, h, w)`` min-max normalised to [0, 1] (float32); a constant or non-finite map becomes
    all zeros (no pseudo-label), never NaN."""
    if probabilities.numel() == 0:
        return probabilities.float()
    out, ok = minmax_rows(probabilities)
    out[~ok] = 0
    return out.reshape(probabilities.shape).float()


class ClipSeg(nn.Module):
    """A ``CLIPSegForImageSegmentation`` run in parts: the image tower once per image, the decoder per prompt.

    Args:
        model: the transformers model (frozen, eval mode here).
        tokenizer: its :class:`_Tokenizer`.
        weights: what the weights are (a Hub name, a folder's absolute path, or ``random``), for records.
        architecture: the architecture asked for (``ViT-B-16`` or a config file), for records.
        input_size, mean, std: the processor's image size and normalisation.
    """

    def __init__(self, model: nn.Module, tokenizer: _Tokenizer, weights: str, architecture: str = ARCHITECTURE,
                 input_size: int = INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.weights = weights
        self.architecture = architecture
        self.input_size = int(input_size)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        config = model.config
        self.extract_layers = [int(i) for i in config.extract_layers]
        self.conditional_layer = int(config.conditional_layer)
        vision = model.clip.vision_model
        self._vision_blocks = [_layer_call(b) for b in vision.encoder.layers]
        self._decoder_blocks = [_layer_call(b) for b in model.decoder.layers]
        patch = config.vision_config.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.model.decoder.film_mul.weight.device

    @property
    def logit_scale(self) -> float:
        """CLIP's temperature ``exp(logit_scale)`` (100 for OpenAI's CLIP)."""
        return float(self.model.clip.logit_scale.exp())

    def record(self) -> dict:
        """What the maps are made with."""
        return {"clipseg": self.weights, "clipseg_revision": getattr(self.model.config, "_commit_hash", None) or "",
                "clipseg_architecture": self.architecture, "tokenizer": self.tokenizer.name,
                "original": CHECKPOINTS.get(self.weights, "")}

    def preprocessing(self, input_size: int | None = None) -> Preprocessing:
        """The processor's view (bilinear resize, its mean/std) at ``input_size`` (default its own, 352),
        rounded up to a multiple of the patch."""
        size = int(input_size or self.input_size)
        size = -(-size // self.patch_size) * self.patch_size
        return Preprocessing(size, mean=self.mean, std=self.std, interpolation="bilinear")

    # ----------------------------------------------------------------- text
    def check_class_names(self, class_names: list[str]) -> None:
        """Refuse a class name that tokenises to nothing (one line naming it)."""
        for k, name in enumerate(class_names):
            if not str(name).strip() or not self.tokenizer.encode(str(name)):
                raise TedlocError(f"class {k} ({name!r}) tokenises to nothing: CLIPSeg cannot prompt it; rename it")

    @torch.no_grad()
    def text_embeddings(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """CLIP's projected text embedding of each text ``(N, P)``, float32, not normalised: CLIPSeg's
        conditional embedding of that prompt. Computed on the tokens up to the batch's last end token (the
        text tower is causal and pools the end token: the padding after it never matters)."""
        clip = self.model.clip
        rows = []
        for i in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer(texts[i:i + batch_size])
            length = int(mask.sum(dim=1).max())
            ids, mask = ids[:, :length].to(self.device), mask[:, :length].to(self.device)
            with torch.autocast(self.device.type, enabled=False):
                pooled = clip.text_model(input_ids=ids, attention_mask=mask).pooler_output
                rows.append(clip.text_projection(pooled).float())
        return torch.cat(rows) if rows else torch.zeros(0, self.model.config.projection_dim, device=self.device)

    def class_text(self, names: list[str], templates: list[str]) -> torch.Tensor:
        """One L2-normalised row per name for the zero-shot classifier: each template's embedding normalised,
        averaged over the templates, normalised again (CLIP's recipe)."""
        rows = [F.normalize(self.text_embeddings([t.format(n) for n in names]), dim=-1) for t in templates]
        return F.normalize(torch.stack(rows).mean(dim=0), dim=-1)

    # ----------------------------------------------------------------- image
    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid of an image (one-line errors for sizes the model cannot take)."""
        p = self.patch_size
        if height < p or width < p:
            raise TedlocError(f"an image of {width}x{height} is smaller than one {p}x{p} CLIPSeg patch")
        if height % p or width % p:
            raise TedlocError(f"an image of {width}x{height} is not a multiple of CLIPSeg's {p}x{p} patch; "
                              f"resize it up to the next multiple")
        return height // p, width // p

    @torch.no_grad()
    def visual(self, images: torch.Tensor, pooled: bool = True
               ) -> tuple[list[torch.Tensor], torch.Tensor | None, tuple[int, int]]:
        """The image tower once: the decoder's inputs (the activations of ``extract_layers``, each through its
        ``reduce``, deepest first: ``(B, 1 + n, reduce_dim)``), CLIP's image embedding (L2-normalised,
        float32; None unless ``pooled``: then the blocks after the deepest extracted one are skipped) and the
        patch grid. Position embeddings are interpolated (bicubic) as transformers does."""
        grid = self.grid(*images.shape[-2:])
        vision = self.model.clip.vision_model
        x = vision.pre_layrnorm(vision.embeddings(images.to(self.device)))
        stop = len(self._vision_blocks) if pooled else max(self.extract_layers) + 1
        kept = {}
        for i in range(stop):
            x = self._vision_blocks[i](x)
            if i in self.extract_layers:
                kept[i] = x
        activations = [kept[i] for i in self.extract_layers][::-1]
        reduced = [reduce(a) for reduce, a in zip(self.model.decoder.reduces, activations)]
        embedding = None
        if pooled:
            with torch.autocast(self.device.type, enabled=False):
                x = vision.post_layernorm(x[:, 0].float())
                embedding = F.normalize(self.model.clip.visual_projection(x), dim=-1)
        return reduced, embedding, grid

    @torch.no_grad()
    def decode(self, reduced: list[torch.Tensor], image_index: torch.Tensor, conditional: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
        """CLIPSeg's decoder for pairs (image ``image_index[j]``, prompt embedding ``conditional[j]``): logits
        ``(N, gh * s, gw * s)``, ``s`` the upsampling of its transposed convolutions (the patch size, 16, for the
        released models: logits at the input's resolution)."""
        decoder = self.model.decoder
        image_index = image_index.to(self.device)
        conditional = conditional.to(self.device)
        out = None
        for i, (r, block) in enumerate(zip(reduced, self._decoder_blocks)):
            r = r[image_index]
            out = r if out is None else r + out
            if i == self.conditional_layer:  # FiLM by the prompt
                out = decoder.film_mul(conditional)[:, None] * out + decoder.film_add(conditional)[:, None]
            out = block(out)
        out = out[:, 1:].transpose(1, 2).reshape(len(out), out.shape[-1], *grid)
        return decoder.transposed_convolution(out)[:, 0]


def _random_model(config):
    transformers = _transformers()
    with torch.random.fork_rng(devices=[]):  # seeded: the same weights in every process and on resume
        torch.manual_seed(0)
        return transformers.CLIPSegForImageSegmentation(config)


def _image_settings(source: str) -> tuple[int, tuple, tuple]:
    """The checkpoint's processor size and mean/std (the defaults, with a warning, where it has none)."""
    transformers = _transformers()
    try:
        processor = _from_pretrained(transformers.AutoImageProcessor.from_pretrained, source, "CLIPSeg processor")
        size = processor.size  # a dict (transformers 4.x), a SizeDict (5.x), or an int
        if not isinstance(size, int):
            size = dict(size.items()) if hasattr(size, "items") else vars(size)
            size = size.get("height") or size.get("shortest_edge")
        return int(size), tuple(processor.image_mean), tuple(processor.image_std)
    except Exception as e:  # TedlocError, or a processor without those fields
        _logger.warning("%s: no image processor (%s); CLIPSeg's %dx%d view with ImageNet's mean/std is used",
                        source, _reason(e), INPUT_SIZE, INPUT_SIZE)
        return INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD


def _tokenizer(source: str, length: int, vocabulary: int) -> _Tokenizer:
    """The checkpoint's tokenizer if it has one that covers the model's vocabulary (transformers 5 builds an
    empty CLIPTokenizer for a folder without tokenizer files), open_clip's CLIP tokenizer otherwise."""
    transformers = _transformers()
    try:
        hf = _from_pretrained(transformers.AutoTokenizer.from_pretrained, source, "CLIPSeg tokenizer")
        if len(hf) < vocabulary:
            raise TedlocError(f"its vocabulary has {len(hf)} tokens, the model {vocabulary}")
        return _Tokenizer(length, hf)
    except Exception as e:
        _logger.warning("%s: no usable tokenizer (%s); open_clip's CLIP tokenizer is used", source, _reason(e))
        return _Tokenizer(length)


def load_clipseg(architecture: str = ARCHITECTURE, weights: str = _OPENAI, device: str | torch.device = "cpu"
                 ) -> ClipSeg:
    """The :class:`ClipSeg` of ``weights`` on ``device``, frozen, in eval mode.

    Args:
        architecture: for random weights, ``ViT-B-16`` (the released ``rd64-uni`` architecture) or a
            ``CLIPSegConfig`` JSON file; real weights bring their own (then it must stay ``ViT-B-16``).
        weights: ``openai`` (the default of ``--clip-pretrained``: :data:`DEFAULT_CHECKPOINT`, the authors'
            ``rd64-uni`` on OpenAI's CLIP ViT-B/16), a Hub name (``CIDAS/clipseg-rd64-refined``, ...), a local
            folder saved with ``save_pretrained``, or ``random`` (seeded, for tests).
    """
    transformers = _transformers()
    if weights in _RANDOM:
        config = clipseg_config(architecture)
        _logger.warning("CLIPSeg %s with random weights (maps and numbers mean nothing)", architecture)
        model = _random_model(config)
        tokenizer = _Tokenizer(config.text_config.max_position_embeddings)
        return ClipSeg(model, tokenizer, "random", architecture).to(device)
    if architecture != ARCHITECTURE:
        raise TedlocError(f"CLIPSeg weights {weights!r} bring their own architecture: --clip {architecture!r} "
                          f"names the architecture of random weights only (leave it at {ARCHITECTURE})")
    source = DEFAULT_CHECKPOINT if weights == _OPENAI else str(weights)
    if os.path.isfile(source):
        raise TedlocError(f"{source}: CLIPSeg weights are a Hugging Face model folder (config.json and weights, "
                          f"saved with save_pretrained) or a Hub name such as {DEFAULT_CHECKPOINT}, not a file")
    model, info = _from_pretrained(transformers.CLIPSegForImageSegmentation.from_pretrained, source,
                                   "CLIPSeg weights", output_loading_info=True)
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("position_ids")]
    if missing:
        raise TedlocError(f"CLIPSeg weights {source!r} lack {len(missing)} of the model's tensors (e.g. "
                          f"{min(missing)}): not a CLIPSegForImageSegmentation checkpoint")
    size, mean, std = _image_settings(source)
    text = model.config.text_config
    tokenizer = _tokenizer(source, text.max_position_embeddings, text.vocab_size)
    record = str(Path(source).resolve()) if os.path.isdir(source) else source
    return ClipSeg(model, tokenizer, record, architecture, size, mean, std).to(device)

