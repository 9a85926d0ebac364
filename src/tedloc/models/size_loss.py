"""TrCAM-V's absolute size loss (thesis app. II eq. A II-6): both regions kept large through a log-barrier.

The extended log-barrier (Kervadec et al. 2019) turns the constraint ``z <= 0`` into a penalty::

    psi_t(z) = -(1/t) log(-z)                       if z <= -1/t^2
               t z - (1/t) log(1/t^2) + 1/t         otherwise

The size loss applies it to minus each region's size, the raw sum of its softmax probabilities over the map::

    L = lambda * 1/2 * sum_{c in (BG, FG)} mean_b psi_t(-sum_p S_{b,c}(p))

so it pushes both regions to grow (every real size is far below -1/t^2, where psi_t is -log|M_c| / t). ``t``
starts at ``init_t`` and is multiplied by ``factor`` after every epoch up to ``max_t`` (TrCAM-V: 1, x1.01, 10):
:class:`LogBarrierSchedule` holds it, and a run's checkpoint stores it, so a resumed run continues the schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["log_barrier", "absolute_size_loss", "LogBarrierSchedule"]


def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """The extended log-barrier ``psi_t(z)`` elementwise (float32): the penalty of the constraint ``z <= 0``."""
    z = z.float()
    bound = -1.0 / t ** 2
    inside = z <= bound
    safe = torch.where(inside, z, torch.full_like(z, bound))  # no log of a non-negative value, no NaN gradient
    barrier = -torch.log(-safe) / t
    linear = t * z - math.log(1.0 / t ** 2) / t + 1.0 / t
    return torch.where(inside, barrier, linear)


def absolute_size_loss(probs: torch.Tensor, t: float) -> torch.Tensor:
    """The unweighted size loss of softmax maps ``probs`` ``(B, 2, H, W)``: ``1/2 sum_c mean_b psi_t(-|M_c|)``."""
    sizes = probs.float().flatten(2).sum(dim=2)  # (B, 2): raw pixel sums
    return 0.5 * sum(log_barrier(-sizes[:, c], t).mean() for c in range(sizes.shape[1]))


@dataclass
class LogBarrierSchedule:
    """The barrier's ``t``: ``init_t``, times ``factor`` after each epoch, at most ``max_t``."""

    init_t: float = 1.0
    factor: float = 1.01
    max_t: float = 10.0

    def __post_init__(self):
        if not (self.init_t > 0 and self.factor >= 1 and self.max_t >= self.init_t):
            raise ValueError("the log-barrier needs init_t > 0, factor >= 1 and max_t >= init_t")

    def t(self, epoch: int) -> float:
        """``t`` during ``epoch`` (0-based): what the public code's per-epoch ``update_t`` reaches, in float32 as it
        keeps it."""
        t = torch.tensor([self.init_t], dtype=torch.float32)
        factor, top = torch.tensor([self.factor], dtype=torch.float32), torch.tensor([self.max_t], dtype=torch.float32)
        for _ in range(epoch):
            t = torch.minimum(t * factor, top)
        return float(t)
