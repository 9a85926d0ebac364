"""Counter-based random numbers: a sample's draws depend only on (seed, stream, epoch, sample index).

A generator that is advanced batch after batch gives a sample different draws when the batch
order, the batch size, the number of processes or the device changes. Here every draw is a
hash of its key instead, computed with 64-bit integer tensor arithmetic, so it is the same on the
CPU and on CUDA, in one process or in many, in any batch:

    keys = sample_keys(seed, epoch, batch["index"], stream=PSEUDO_LABELS)
    u = keyed_uniform(keys, n)          # (B, n) float64 in [0, 1)

The hash is Chris Wellons' ``lowbias32`` (two multiply-xorshift rounds on 32-bit words); a
uniform takes 53 bits from two hashed words, as ``random.random`` does.
"""
from __future__ import annotations

import torch

__all__ = ["sample_keys", "keyed_uniform"]

_MASK = 0xFFFFFFFF


def _mul32(x: torch.Tensor | int, c: int) -> torch.Tensor | int:
    """``x * c mod 2**32`` for 32-bit ``x`` without overflowing int64 (split ``c`` into 16-bit halves)."""
    low = x * (c & 0xFFFF)
    high = ((x * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK


def _mix32(x: torch.Tensor | int) -> torch.Tensor | int:
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _fold(value: int) -> int:
    """A 32-bit hash of a Python integer of any size (negative ones included)."""
    value = int(value)
    h = _mix32(0x6A09E667 ^ (1 if value < 0 else 0))
    value = abs(value)
    while True:
        h = _mix32(h ^ (value & _MASK))
        value >>= 32
        if not value:
            return h


def sample_keys(seed: int, epoch: int, index: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """One 32-bit key per sample (int64 tensor like ``index``) from (seed, stream, epoch, index)."""
    base = _mix32(_fold(seed) ^ _mix32(_fold(stream) ^ _mix32(_fold(epoch))))
    index = index.to(torch.int64)
    return _mix32(base ^ _mix32(index & _MASK) ^ _mix32((index >> 32) + 0x9E3779B9))


def keyed_uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, n)`` float64 uniforms in [0, 1): row b is a function of ``keys[b]`` alone (any device)."""
    keys = keys.to(torch.int64).reshape(-1, 1)
    j = torch.arange(n, dtype=torch.int64, device=keys.device)
    base = _mix32(keys)
    a = _mix32(base ^ _mix32(2 * j))
    b = _mix32(base ^ _mix32(2 * j + 1))
    return ((a >> 5) * 67108864 + (b >> 6)).to(torch.float64) / 9007199254740992.0
