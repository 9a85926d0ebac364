"""CLIP-ES (Lin et al., CVPR 2023): softmax-Grad-CAM of CLIP with background prompts, refined by the
class-aware attention affinity (CAA). The pseudo-label source of TeD-Loc and of the ``clip`` annotator.

For a batch of images (any size that is a multiple of the patch) and one class per image:

1. the image tower runs with position embeddings interpolated (bilinear) to the patch grid; the
   attention weights of every block, averaged over heads, are kept for the last ``caa_blocks``;
2. the last block runs again from its ``ln_1`` output ``A`` with gradients; the image embedding is
   the mean of the patch tokens through ``ln_post`` and the projection (not the class token);
3. logits = ``exp(logit_scale)`` x cosine with the text set [the class ; the background prompts],
   all written with the template ``'a clean origami {}.'``; their softmax over that set; the
   target is the class's probability (index 0), so background explanations compete with it;
4. Grad-CAM on ``A``'s patch tokens: channel weights = gradients averaged over the patches,
   ``relu(sum_c w_c A_c)``, min-max normalised (``x - min) / (max + 1e-7)``) at token resolution,
   as pytorch-grad-cam does twice (per layer, then after the layer aggregation);
5. CAA: the mean attention of the last ``caa_blocks`` blocks without the class token, balanced
   (columns then rows normalised, three times), symmetrised, squared; its columns are masked by
   the union of the boxes of the CAM's regions above ``box_threshold`` x its max (boxes as CLIP-ES
   draws them, see :func:`box_mask`); refined = that matrix x the CAM, min-max normalised.

Everything is batched (the reference runs one image and one class at a time). Where WSOL differs
from the reference's VOC setting (one class per image; background words that are the class's own
words) see docs/CLIP.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, ContextManager

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tedloc.errors import OptionError
from tedloc.models.clip_vit import ClipTower

__all__ = ["ClipES", "ClipESConfig", "BACKGROUND_PROMPTS", "CLIP_ES_TEMPLATE", "background_allowed",
           "minmax_eps", "box_mask", "balance_affinity", "refine_with_affinity"]

CLIP_ES_TEMPLATE = "a clean origami {}."
# CLIP-ES's background words for PASCAL VOC (the COCO list drops "keyboard" and "sign")
BACKGROUND_PROMPTS = ("ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea",
                      "railway", "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road",
                      "rock", "street", "valley", "bridge", "sign")
_EPS = 1e-7


@dataclass(frozen=True)
class ClipESConfig:
    """CLIP-ES's settings (the reference's values by default).

    Attributes:
        template: the prompt of classes and background words.
        background: the background words (empty: no background prompts; the target is then the class's logit,
            since a softmax over one prompt is constant).
        drop_colliding_background: leave out, per class, the background words that are words of the
            class's name ("valley" for the class "valley"); False keeps the list verbatim.
        refine: apply CAA (False: the Grad-CAM alone).
        caa_blocks: how many last blocks' attention CAA averages (all blocks of a shallower tower).
        box_threshold: CAA's box mask, a fraction of the CAM's max.
        balance_rounds: column-then-row normalisations of the affinity.
    """

    template: str = CLIP_ES_TEMPLATE
    background: tuple[str, ...] = BACKGROUND_PROMPTS
    drop_colliding_background: bool = True
    refine: bool = True
    caa_blocks: int = 8
    box_threshold: float = 0.4
    balance_rounds: int = 3

    def __post_init__(self):
        if self.template.count("{}") != 1:
            raise OptionError(f"template {self.template!r} must contain '{{}}' exactly once")
        if not 0 < self.box_threshold < 1:
            raise OptionError(f"box_threshold must be in (0, 1), got {self.box_threshold}")
        if self.caa_blocks < 1 or self.balance_rounds < 1:
            raise OptionError("caa_blocks and balance_rounds must be at least 1")


def background_allowed(class_names: list[str], background: tuple[str, ...], drop_colliding: bool) -> torch.Tensor:
    """``(K, len(background))`` bool: which background words compete with each class."""
    allowed = torch.ones(len(class_names), len(background), dtype=torch.bool)
    if drop_colliding:
        for k, name in enumerate(class_names):
            words = set(str(name).lower().replace(",", " ").replace("_", " ").split())
            for j, word in enumerate(background):
                allowed[k, j] = not set(word.lower().split()) <= words
    return allowed


def minmax_eps(maps: torch.Tensor) -> torch.Tensor:
    """``(x - min) / (max - min + 1e-7)`` per map over the last two dimensions (pytorch-grad-cam's scaling)."""
    flat = maps.flatten(-2)
    flat = flat - flat.min(dim=-1, keepdim=True).values
    flat = flat / (flat.max(dim=-1, keepdim=True).values + _EPS)
    return flat.reshape(maps.shape)


def box_mask(cam: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """CAA's mask on the token grid: 1 inside the box of every region of ``cam`` (in [0, 1]) above
    ``threshold`` x its max, as CLIP-ES draws them.

    The map is quantised to uint8 (``cam * 255`` truncated), cut at ``int(threshold * max)``
    (strictly above), and each 8-connected region's box ``[x0, x0 + w) x [y0, y0 + h)`` is filled
    with its end clipped to ``W - 1`` / ``H - 1``, so a region touching the right (bottom) border
    leaves the last column (row) out: CLIP-ES's convention, kept for fidelity.
    """
    h, w = cam.shape
    u8 = (np.asarray(cam, dtype=np.float32) * 255).astype(np.uint8)
    cut = int(threshold * int(u8.max()))
    binary = (u8 > cut).astype(np.uint8)
    mask = np.zeros((h, w), dtype=np.float32)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    for x0, y0, bw, bh, _area in stats[1:count]:
        mask[y0:min(y0 + bh, h - 1), x0:min(x0 + bw, w - 1)] = 1
    return mask


def balance_affinity(attention: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """CAA's transition matrix from attention ``(..., n, n)``: columns then rows normalised ``rounds``
    times, symmetrised, squared."""
    t = attention
    for _ in range(rounds):
        t = t / t.sum(dim=-2, keepdim=True)
        t = t / t.sum(dim=-1, keepdim=True)
    t = (t + t.transpose(-1, -2)) / 2
    return t @ t


def refine_with_affinity(cams: torch.Tensor, attention: torch.Tensor, threshold: float = 0.4,
                         rounds: int = 3) -> torch.Tensor:
    """CAA: ``cams (B, h, w)`` in [0, 1] refined with the patch attention ``(B, h*w, h*w)``; min-max normalised."""
    b, h, w = cams.shape
    trans = balance_affinity(attention.float(), rounds)
    masks = torch.from_numpy(np.stack([box_mask(c, threshold) for c in cams.float().cpu().numpy()]))
    trans = trans * masks.to(trans.device).reshape(b, 1, h * w)
    refined = trans @ cams.float().reshape(b, h * w, 1)
    return minmax_eps(refined.reshape(b, h, w))


class ClipES:
    """CLIP-ES maps of a CLIP tower for the classes of a dataset.

    Args:
        tower: the :class:`~tedloc.models.clip_vit.ClipTower`.
        class_names: the dataset's classes (prompted with ``config.template``).
        config: :class:`ClipESConfig`.
    """

    def __init__(self, tower: ClipTower, class_names: list[str], config: ClipESConfig = ClipESConfig()):
        if config.caa_blocks > tower.num_blocks:  # a shallower tower than ViT-B's 12 blocks: all of them
            config = dataclasses.replace(config, caa_blocks=tower.num_blocks)
        self.tower = tower
        self.config = config
        self.class_names = list(class_names)
        self.class_text = tower.text_embeddings(self.class_names, [config.template])
        bg = list(config.background)
        self.background_text = (tower.text_embeddings(bg, [config.template]) if bg
                                else self.class_text.new_zeros(0, self.class_text.shape[1]))
        self.allowed = background_allowed(self.class_names, config.background, config.drop_colliding_background)
        self.to(tower.device)

    def to(self, device: torch.device) -> "ClipES":
        """Move the text embeddings (the tower moves on its own)."""
        self.class_text = self.class_text.to(device)
        self.background_text = self.background_text.to(device)
        self.allowed = self.allowed.to(device)
        return self

    def text_logits(self, embedding: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1 + nb)`` of each image embedding (L2-normalised) against [its class ; the background
        words], the background words that collide with the class at -inf."""
        text = torch.cat([self.class_text[classes][:, None], self.background_text[None].expand(len(classes), -1, -1)],
                         dim=1)
        logits = self.tower.logit_scale * torch.einsum("bd,btd->bt", embedding.float(), text.float())
        keep = torch.cat([torch.ones_like(classes, dtype=torch.bool)[:, None], self.allowed[classes]], dim=1)
        return logits.masked_fill(~keep, float("-inf"))

    def maps(self, images: torch.Tensor, classes: torch.Tensor | None, refine: bool | None = None,
             classify_text: torch.Tensor | None = None, autocast: Callable[[], ContextManager] = contextlib.nullcontext
             ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(zero-shot class scores or None, CLIP-ES maps ``(B, gh, gw)`` in [0, 1] on the patch grid).

        ``classes`` (B,): the class of each image; None: the class CLIP predicts zero-shot with
        ``classify_text`` (L2-normalised rows ``(K, E)``), from the last block as trained and its own
        pooling (one trunk pass serves both). With ``classify_text`` the scores are returned too.
        ``autocast``: the context of the transformer blocks (a runtime's reduced precision); the
        readout, the softmax target, Grad-CAM and CAA always run in float32, as the reference's CAA.
        """
        cfg = self.config
        refine = cfg.refine if refine is None else refine
        tower = self.tower
        images = images.to(tower.device)
        fp32 = functools.partial(torch.autocast, tower.device.type, enabled=False)
        last = tower.num_blocks - 1
        with torch.no_grad():
            with autocast():
                x, grid = tower.embed(images, pos_mode="bilinear")
                x, attention = tower.run_blocks(x, last, weights_from=last - cfg.caa_blocks + 1 if refine else None)
                trained = tower.block(last, x)[0] if classify_text is not None else None
            scores = tower.class_probabilities(trained, classify_text) if trained is not None else None
        if classes is None:
            if scores is None:
                raise ValueError("CLIP-ES needs the classes, or classify_text to predict them")
            classes = scores.argmax(dim=1)
        classes = torch.as_tensor(classes, device=tower.device).long().reshape(-1)
        block = tower.blocks[last]
        with torch.enable_grad():
            with autocast():
                a = block.ln_1(x).detach().requires_grad_(True)
                out, last_weights = tower.attention(block, a, need_weights=refine)
                y = x + block.ls_1(out)
                y = y + block.ls_2(block.mlp(block.ln_2(y)))
            with fp32():
                embedding = F.normalize(tower.readout(y[:, 1:]).mean(dim=1), dim=-1)
                logits = self.text_logits(embedding, classes)
                # a softmax over one prompt is constant: without background prompts the target is the logit
                target = logits.softmax(dim=-1)[:, 0] if logits.shape[1] > 1 else logits[:, 0]
                (grads,) = torch.autograd.grad(target.sum(), a)
        with fp32():
            acts, grads = a.detach()[:, 1:].float(), grads[:, 1:].float()
            cams = torch.relu(torch.einsum("bnd,bd->bn", acts, grads.mean(dim=1)))
            cams = minmax_eps(minmax_eps(cams.reshape(-1, *grid)))  # per layer, then after the layer aggregation
            if not refine:
                return scores, cams
            if cfg.caa_blocks == 1:
                attention = last_weights.detach().float()
            else:
                attention = (attention.float() * (cfg.caa_blocks - 1) + last_weights.detach().float()) / cfg.caa_blocks
            return scores, refine_with_affinity(cams, attention[:, 1:, 1:], cfg.box_threshold, cfg.balance_rounds)
