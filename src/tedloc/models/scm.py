"""SCM (Bai et al., ECCV 2022): spatial calibration modules after TS-CAM's semantic maps, during training only.

Each module diffuses the class-agnostic activation ``cam`` (B, N) over the patch grid: with ``S`` the cosine
similarity of the patches' semantic vectors and ``L`` the grid's 4-neighbour Laplacian, the diffusion matrix is
``F = (L * (r S - 1))^-1`` transposed (``*`` element-wise, ``r`` a learnable rate, the inverse by Newton-Schulz
iterations); the calibrated activation ``tanhshrink(F cam / (t max cam))`` (``t`` a learnable threshold), min-max
normalised, re-weights the semantic maps and is added to both (residual). The logits of the last module's
semantic maps train the network; at inference the modules are left out and the map is the min-max normalised
attention map times the semantic map of the class.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from tedloc.models.tscam import TSCAMNetwork
from tedloc.models.vit_wsol import min_max_norm

__all__ = ["SCMNetwork", "SpatialCalibration", "grid_laplacian", "newton_schulz_inverse", "cosine_similarity_matrix",
           "diffusion_matrix", "SCHULZ_ALPHA"]

SCHULZ_ALPHA = 0.002  # the authors' start of the Newton-Schulz iterations: alpha * X^T


@lru_cache(maxsize=16)
def _laplacian(h: int, w: int) -> torch.Tensor:
    n = h * w
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < h and 0 <= cc < w:
                    adjacency[r * w + c, rr * w + cc] = 1.0
    return torch.diag(adjacency.sum(dim=0)) - adjacency


def grid_laplacian(h: int, w: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """The Laplacian (in-degree minus adjacency) of the 4-neighbour graph of an ``h x w`` grid, patches in row-major
    order: (h*w, h*w)."""
    return _laplacian(int(h), int(w)).to(device=device, dtype=dtype)


def newton_schulz_inverse(x: torch.Tensor, iterations: int, alpha: float = SCHULZ_ALPHA) -> torch.Tensor:
    """An approximate inverse of the square matrices ``x`` (..., N, N): ``Y <- Y (2I - X Y)`` ``iterations`` times
    from ``Y = alpha X^T`` (the start taken without gradient, as the authors do)."""
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    inverse = alpha * x.detach().transpose(-2, -1)
    for _ in range(iterations):
        inverse = inverse @ (2 * eye - x @ inverse)
    return inverse


def cosine_similarity_matrix(tokens: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities (B, N, N) of tokens (B, N, D)."""
    norm = tokens.norm(p=2, dim=-1)
    return (tokens @ tokens.transpose(-2, -1)) / (norm[:, :, None] * norm[:, None, :])


def diffusion_matrix(similarity: torch.Tensor, laplacian: torch.Tensor, rate: torch.Tensor, iterations: int
                     ) -> torch.Tensor:
    """SCM's diffusion matrix: ``(L * (rate S - 1))^-1`` (Newton-Schulz, ``iterations``) transposed: (B, N, N)."""
    return newton_schulz_inverse(laplacian * (rate * similarity - 1), iterations).transpose(-2, -1)


class SpatialCalibration(nn.Module):
    """One spatial calibration module: learnable ``threshold`` (initially 0.5) and diffusion ``rate`` (initially
    1), ``iterations`` Newton-Schulz iterations."""

    def __init__(self, iterations: int, threshold: float = 0.5, rate: float = 1.0):
        super().__init__()
        self.iterations = int(iterations)
        self.threshold = nn.Parameter(torch.full((1,), float(threshold)))
        self.rate = nn.Parameter(torch.full((1,), float(rate)))

    def forward(self, x: torch.Tensor, cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic maps ``x`` (B, K, h, w) and activation ``cam`` (B, h*w) -> both calibrated (residual)."""
        b, k, h, w = x.shape
        similarity = cosine_similarity_matrix(x.flatten(2).transpose(1, 2))
        laplacian = grid_laplacian(h, w, x.device, x.dtype)
        out = (diffusion_matrix(similarity, laplacian, self.rate, self.iterations) @ cam[:, :, None])[:, :, 0]
        out = min_max_norm(F.tanhshrink(out / (self.threshold * cam.max(dim=1, keepdim=True).values)))
        return x + x * out.reshape(b, 1, h, w), cam + out


class SCMNetwork(TSCAMNetwork):
    """TS-CAM's network with ``layers`` spatial calibration modules in training (the first with
    ``first_iterations`` Newton-Schulz iterations, the others ``iterations``); :meth:`localization` gives ``scm``
    (normalised attention x semantic, per class), ``attention`` (normalised) and ``semantic``."""

    map_names = ("scm", "attention", "semantic")

    def __init__(self, vit: nn.Module, num_classes: int, layers: int = 4, first_iterations: int = 16,
                 iterations: int = 4, threshold: float = 0.5, rate: float = 1.0):
        super().__init__(vit, num_classes)
        self.calibration = nn.ModuleList(
            SpatialCalibration(first_iterations if i == 0 else iterations, threshold, rate) for i in range(layers))

    def attention_map(self, weights: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """TS-CAM's attention map, min-max normalised per image (B, 1, h, w)."""
        attention = self.class_attention(weights, grid)
        return min_max_norm(attention.flatten(1)).reshape(attention.shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits: in training, of the semantic maps after the calibration modules; in evaluation, of the
        semantic maps themselves (the modules are for training only)."""
        semantic, weights, grid = self.features(images)
        if not self.training:
            return self.logits_of(semantic)
        cam = self.attention_map(weights, grid).flatten(1)
        for module in self.calibration:
            semantic, cam = module(semantic, cam)
        return self.logits_of(semantic)
