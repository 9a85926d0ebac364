"""Batch norm whose batch statistics span every process, on any backend.

With N processes of batch B/N, plain batch norm normalises each share by its own statistics,
so the training differs from one process with batch B. ``torch.nn.SyncBatchNorm`` fixes that
on GPUs only; :class:`GlooSyncBatchNorm` does the same on the CPU (gloo): it all-reduces the
per-channel sum, sum of squares and count (differentiably), and normalises by the global mean
and biased variance, updating the running statistics with the unbiased one, as batch norm does.
:func:`synchronize_batchnorm` picks the right one for the device.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

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
    """``BatchNorm2d`` with statistics over all processes of the default group (any backend)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        channels = x.shape[1]
        xf = x.float()
        count = torch.full((1,), x.numel() / channels, dtype=torch.float32, device=x.device)
        stats = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), count])
        stats = all_reduce_sum(stats)
        total, squares, n = stats[:channels], stats[channels:2 * channels], stats[-1]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * unbiased)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def synchronize_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` synchronised across processes (weights and buffers kept)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlooSyncBatchNorm):
        synced = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        if module.affine:
            synced.weight.requires_grad_(module.weight.requires_grad)
            synced.bias.requires_grad_(module.bias.requires_grad)
        return synced.to(module.running_mean.device if module.running_mean is not None else "cpu")
    for name, child in module.named_children():
        setattr(module, name, synchronize_batchnorm(child, device))
    return module
