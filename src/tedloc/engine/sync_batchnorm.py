"""Batch norm whose batch statistics span every process, on any backend.

With N processes of batch B/N, plain batch norm normalises each share by its own statistics,
so the training differs from one process with batch B. On CUDA, timm's
``convert_sync_batchnorm`` swaps in ``torch.nn.SyncBatchNorm`` (and timm's fused norm + activation
layers for their synchronised twins). On CPUs (gloo), :class:`GlooSyncBatchNorm` does the same:
it all-reduces the per-channel count, sum and sum of squares (in float64, differentiably),
normalises by the global mean and biased variance, updates the running statistics with the
unbiased one, as batch norm does, and keeps the dropout and activation of timm's
``BatchNormAct2d``. Other batch norms (1-D, 3-D) over gloo are refused rather than left local.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from tedloc.errors import TedlocError

__all__ = ["GlooSyncBatchNorm", "synchronize_batchnorm", "all_reduce_sum"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The differentiable sum of ``tensor`` over the processes of the default group."""
    return _AllReduceSum.apply(tensor)


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` with statistics over all processes of the default group (any backend); with
    ``drop``/``act`` children (from timm's ``BatchNormAct2d``) they follow the normalisation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): normalised with statistics over all processes when training in a
        group of several (else plain batch norm), then ``drop`` and ``act`` when present."""
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            y = super().forward(x)
        else:
            y = self._synchronised(x)
        if hasattr(self, "drop"):
            y = self.drop(y)
        if hasattr(self, "act"):
            y = self.act(y)
        return y

    def _synchronised(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        xd = x.double()
        count = torch.full((1,), x.numel() / channels, dtype=torch.float64, device=x.device)
        stats = all_reduce_sum(torch.cat([xd.sum(dim=(0, 2, 3)), (xd * xd).sum(dim=(0, 2, 3)), count]))
        total, squares, n = stats[:channels], stats[channels:2 * channels], stats[-1]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype)[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def _gloo_twin(module: nn.BatchNorm2d) -> GlooSyncBatchNorm:
    synced = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
    synced.load_state_dict(module.state_dict())
    synced.train(module.training)
    if module.affine:
        synced.weight.requires_grad_(module.weight.requires_grad)
        synced.bias.requires_grad_(module.bias.requires_grad)
    for name in ("drop", "act"):  # timm's BatchNormAct2d
        if isinstance(getattr(module, name, None), nn.Module):
            synced.add_module(name, getattr(module, name))
    return synced.to(module.running_mean.device if module.running_mean is not None else "cpu")


def _synchronize_gloo(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlooSyncBatchNorm):
        return _gloo_twin(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.BatchNorm2d):
        raise TedlocError(f"{type(module).__name__}: batch norm across CPU processes supports 2-D feature maps "
                          f"only; train this model in one process or on GPUs")
    for name, child in module.named_children():
        setattr(module, name, _synchronize_gloo(child))
    return module


def synchronize_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch norm synchronised across processes (weights and buffers kept)."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    return _synchronize_gloo(module)
