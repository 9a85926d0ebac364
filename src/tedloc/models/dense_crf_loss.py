"""The dense CRF loss (Tang et al. 2018) that DiPS adds to its partial cross-entropy (thesis eq. 2.3).

For soft segmentations ``S`` (B, K, H, W) (a softmax over K channels) and the images' RGB values in
[0, 255]::

    loss = -(1 / B) * sum_b sum_k S_bk^T W_b S_bk,
    W_b[i, j] = exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |I_i - I_j|^2 / (2 sigma_rgb^2)),

one bilateral Gaussian over pixel positions ``p`` and colours ``I`` (diagonal included), the
constant-dropped form of ``sum_k S_k^T W (1 - S_k)``; DiPS's weight is 2e-9 with sigma_rgb 15 and
sigma_xy 100. Here ``W S`` is computed **exactly** (every pair of pixels, in row blocks that bound
the memory), where the reference code approximates it with a permutohedral lattice, whose loss is
about 0.58 of the exact one on real 224x224 images (0.52-0.62; ``scripts/bench_dense_crf.py
--lattice``): DiPS's configs multiply this loss by that ``crf_gain`` so 2e-9 weighs as in DiPS. The cost is
quadratic in the pixels: with ``scale`` < 1 the loss is computed on images and segmentations
resized by ``scale`` (colours by area averaging, segmentations bilinearly) with sigma_xy scaled
alike, as Tang et al.'s ``scale_factor`` does; the value then is that of the smaller grid (no
rescaling of the pair count), so the weight is tuned with the scale. The gradient is ``-2 W S / B``
(W is symmetric), kept from the forward pass: memory O(B K H W), not O((HW)^2). The filter always
runs in float32 (autocast disabled): pair distances in bf16 are off by percents.

Cost (forward and backward; ``scripts/bench_dense_crf.py``, BENCHMARKS.md): one 224x224 image exact
(50,176 pixels, 2.5e9 pairs) takes tens of seconds on the project's 2-core CPU; 32 images of 64x64 on a
32x32 grid (``scale=0.5``, the offline recipes) a fifth of a second. Training at 224x224 needs a GPU
(both methods are matrix products there) or ``method="rff"`` (random Fourier features: linear in the
pixels, unbiased, about 3 % error per pixel with 2,048 features), about 13x faster than exact here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["dense_crf_loss", "bilateral_filter", "bilateral_filter_rff"]


def _features(images: torch.Tensor, sigma_rgb: float, sigma_xy: float) -> torch.Tensor:
    """``(B, H*W, 5)``: positions over sigma_xy and colours over sigma_rgb."""
    b, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=torch.float32),
                            torch.arange(w, device=images.device, dtype=torch.float32), indexing="ij")
    pos = torch.stack([ys, xs]).reshape(2, -1).T / sigma_xy
    rgb = images.float().reshape(b, 3, -1).transpose(1, 2) / sigma_rgb
    return torch.cat([pos.expand(b, -1, -1), rgb], dim=2)


@torch.no_grad()
def bilateral_filter(images: torch.Tensor, values: torch.Tensor, sigma_rgb: float = 15.0, sigma_xy: float = 100.0,
                     block: int | None = None) -> torch.Tensor:
    """``W values``: every pixel's values summed over all pixels with the bilateral Gaussian weights (exact).

    ``images`` (B, 3, H, W) in [0, 255]; ``values`` (B, K, H, W); returns (B, K, H, W). ``block``: rows of W
    per step (default: about 2^26 weights in memory at once).
    """
    b, k, h, w = values.shape
    block = block or max(1, 2 ** 24 // (b * h * w))  # the block's distances and weights: a few 2^24 floats
    with torch.autocast(values.device.type, enabled=False):  # pair distances need float32 under any autocast
        return _filter(images.to(values.device).float(), values.float(), sigma_rgb, sigma_xy, block)


def _filter(images: torch.Tensor, values: torch.Tensor, sigma_rgb: float, sigma_xy: float, block: int
            ) -> torch.Tensor:
    b, k, h, w = values.shape
    feats = _features(images, sigma_rgb, sigma_xy)  # (B, N, 5)
    feats = feats - feats.mean(dim=1, keepdim=True)  # distances unchanged; smaller terms, less float32 cancellation
    flat = values.float().reshape(b, k, -1).transpose(1, 2)  # (B, N, K)
    half = -0.5 * (feats ** 2).sum(dim=2)  # (B, N)
    transposed = feats.transpose(1, 2)
    out = torch.empty_like(flat)
    for start in range(0, h * w, block):
        # -|f_i - f_j|^2 / 2 = f_i . f_j - |f_i|^2 / 2 - |f_j|^2 / 2, in one batched product, then in place
        log_weights = torch.baddbmm(half[:, None, :], feats[:, start:start + block], transposed)
        log_weights += half[:, start:start + block, None]
        out[:, start:start + block] = torch.bmm(log_weights.clamp_max_(0).exp_(), flat)
    return out.transpose(1, 2).reshape(b, k, h, w)


@torch.no_grad()
def bilateral_filter_rff(images: torch.Tensor, values: torch.Tensor, sigma_rgb: float = 15.0,
                         sigma_xy: float = 100.0, features: int = 2048, seed: int = 0) -> torch.Tensor:
    """``W values`` approximated with random Fourier features (Rahimi and Recht 2007): the Gaussian kernel is
    ``E[phi(f_i) . phi(f_j)]`` with ``phi(f) = sqrt(2 / D) cos(omega f + b)``, omega ~ N(0, I), b ~ U(0, 2 pi),
    so ``W S ~ Phi (Phi^T S)``: linear in the pixels, unbiased, error ~ 1 / sqrt(D) (about 3 % per pixel at
    D = 2048 on a test image); ``seed`` fixes the features (draw a new seed per step for unbiased noise)."""
    b, k, h, w = values.shape
    generator = torch.Generator().manual_seed(int(seed))
    omega = torch.randn(5, features, generator=generator).to(values.device)
    phase = (torch.rand(features, generator=generator) * 2 * math.pi).to(values.device)
    with torch.autocast(values.device.type, enabled=False):
        feats = _features(images.to(values.device).float(), sigma_rgb, sigma_xy)
        feats = feats - feats.mean(dim=1, keepdim=True)
        flat = values.float().reshape(b, k, -1).transpose(1, 2)
        out = torch.empty_like(flat)
        for i in range(b):  # one image at a time: Phi is (H*W, D)
            phi = math.sqrt(2.0 / features) * torch.cos(feats[i] @ omega + phase)
            out[i] = phi @ (phi.T @ flat[i])
    return out.transpose(1, 2).reshape(b, k, h, w)


FILTERS = {"exact": bilateral_filter, "rff": bilateral_filter_rff}


class _DenseCRF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, probs: torch.Tensor, images: torch.Tensor, sigma_rgb: float, sigma_xy: float,
                method: str = "exact", options: dict | None = None) -> torch.Tensor:
        ctx.dtype = probs.dtype
        filtered = FILTERS[method](images, probs, sigma_rgb, sigma_xy, **(options or {}))
        ctx.save_for_backward(filtered)
        return -(probs.float() * filtered).sum() / probs.shape[0]  # float32: the filtered values are

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (filtered,) = ctx.saved_tensors
        return (-2 * grad * filtered / filtered.shape[0]).to(ctx.dtype), None, None, None, None, None


def dense_crf_loss(probs: torch.Tensor, images: torch.Tensor, sigma_rgb: float = 15.0, sigma_xy: float = 100.0,
                   scale: float = 1.0, method: str = "exact", features: int = 2048, seed: int = 0) -> torch.Tensor:
    """The dense CRF loss of soft segmentations ``probs`` (B, K, H, W) on ``images`` (B, 3, H, W), RGB in [0, 255]
    (the same crop and flip, not normalised); see the module docstring. Unweighted: multiply by DiPS's 2e-9.

    ``method``: ``exact`` (every pixel pair) or ``rff`` (:func:`bilateral_filter_rff` with ``features`` and
    ``seed``: linear in the pixels, for full-resolution training)."""
    if method not in FILTERS:
        raise ValueError(f"method must be one of {', '.join(FILTERS)}, got {method!r}")
    if probs.shape[0] != images.shape[0] or probs.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"segmentations {tuple(probs.shape)} and images {tuple(images.shape)} do not match")
    images = images.to(probs.device)
    if scale != 1.0:
        size = (max(1, round(probs.shape[-2] * scale)), max(1, round(probs.shape[-1] * scale)))
        images = F.interpolate(images.float(), size=size, mode="area")
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        sigma_xy = sigma_xy * scale
    options = {"features": features, "seed": seed} if method == "rff" else {}
    return _DenseCRF.apply(probs, images, sigma_rgb, sigma_xy, method, options)
