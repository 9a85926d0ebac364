"""Class maps from a CLIP model and the class names, as in CLIP-ES (Lin et al. 2023), simplified.

The image (resized to the model's square input, the whole image kept) goes through the CLIP
image tower; the logits are 100 * cos(image, prompt_k) for one prompt per class
("a clean origami {}.", CLIP-ES's template); the target is the softmax probability of the
class (the softmax over all classes is CLIP-ES's key trick: it suppresses what other classes
explain). Grad-CAM on the patch tokens of the last transformer block gives the map. Not
included: CLIP-ES's background prompts and its attention-based refinement (CAA).

Weights: ``open_clip:<arch>@<tag>`` (a tag of ``open_clip.list_pretrained()``, fetched once
with network access, or a local file); ``@random`` gives random weights (tests only).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tedloc.errors import TedlocError
from tedloc.eval.scoremaps import normalize_scoremap

__all__ = ["CLIPCAM", "CLIP_ES_TEMPLATE"]

CLIP_ES_TEMPLATE = "a clean origami {}."
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPCAM:
    """``clip_cam(image, label) -> map`` at the image's size, in [0, 1]."""

    def __init__(self, spec: str, class_names: list[str], template: str = CLIP_ES_TEMPLATE,
                 device: str | torch.device = "cpu"):
        try:
            import open_clip
        except ImportError:
            raise TedlocError("CLIP maps need open_clip (pip install open_clip_torch)") from None
        backend, _, model = spec.partition(":")
        if backend != "open_clip" or not model:
            raise TedlocError(f"CLIP model spec must be open_clip:<arch>@<tag>, got {spec!r}")
        arch, _, tag = model.partition("@")
        self.device = torch.device(device)
        self.model = open_clip.create_model(arch, pretrained=None if tag in ("", "random") else tag).eval()
        self.model.to(self.device)
        visual = self.model.visual
        if not hasattr(visual, "transformer"):
            raise TedlocError(f"{arch}: CLIP maps need a ViT image tower")
        self.size = int(visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size)
        self.grid = tuple(int(g) for g in visual.grid_size)
        tokenizer = open_clip.get_tokenizer(arch)
        with torch.no_grad():
            text = self.model.encode_text(tokenizer([template.format(n) for n in class_names]).to(self.device))
        self.text = torch.nn.functional.normalize(text.float(), dim=-1)
        self.spec = spec

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        x = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BICUBIC), dtype=np.float32) / 255.0
        t = torch.from_numpy(x).permute(2, 0, 1)
        return ((t - torch.tensor(_MEAN)[:, None, None]) / torch.tensor(_STD)[:, None, None])[None].to(self.device)

    def raw_map(self, image: Image.Image, label: int) -> np.ndarray:
        """Grad-CAM on the grid of patch tokens, (gh, gw), non-negative."""
        captured = {}

        def hook(_module, _inputs, output):
            output.retain_grad()
            captured["tokens"] = output

        handle = self.model.visual.transformer.resblocks[-1].register_forward_hook(hook)
        try:
            features = self.model.encode_image(self._tensor(image))
        finally:
            handle.remove()
        logits = 100.0 * torch.nn.functional.normalize(features.float(), dim=-1) @ self.text.T
        logits.softmax(dim=-1)[0, label].backward()
        tokens, grads = captured["tokens"], captured["tokens"].grad
        n_patches = self.grid[0] * self.grid[1]
        if tokens.shape[0] != 1:  # (L, N, D) layout of older open_clip
            tokens, grads = tokens.transpose(0, 1), grads.transpose(0, 1)
        a, g = tokens[0, -n_patches:].detach(), grads[0, -n_patches:]  # patch tokens (prefix tokens dropped)
        cam = torch.relu(a @ g.mean(dim=0))
        return cam.reshape(self.grid).double().cpu().numpy()

    def __call__(self, image: Image.Image, label: int) -> np.ndarray:
        return normalize_scoremap(self.raw_map(image, label), image.size)
