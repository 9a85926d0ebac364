"""Where networks run, in which precision and in which job: the runtime context of every command.

    runtime = Runtime.create()          # auto: CUDA (bf16 where supported) if present, else CPU (fp32)
    with runtime.autocast():
        out = model(runtime.to_device(images))

A :class:`Runtime` is resolved once, at the entry point (a command's ``--device``/``--precision``, a
recipe, :meth:`tedloc.Localizer.from_run`, or a user's ``Runtime.create(...)``), and passed down:
no library function makes one of its own. Under ``torchrun`` it also holds the job's processes
(``runtime.dist``, joined by :meth:`Runtime.create`); alone, a world of one.

``auto`` picks CUDA when it is available, then Apple's MPS, else the CPU. Precision ``auto``
is bf16 on a GPU that supports it and fp32 elsewhere. Reduced precision is autocast of the
forward passes only: weights, optimizer state and losses stay in fp32; fp16 needs a gradient
scaler (:meth:`Runtime.grad_scaler`). Every bad choice is a one-line :class:`TedlocError` that
says what is available.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from tedloc.errors import TedlocError
from tedloc.utils.distributed import Distributed

__all__ = ["Runtime", "resolve_device", "resolve_precision", "DEVICE_CHOICES", "PRECISIONS"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _available() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked to exist."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TedlocError(f"unknown device {name!r}: use {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TedlocError(f"--device {name}: CUDA is not available on this machine (available: {_available()})")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise TedlocError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(available: {_available()})")
        return torch.device("cuda", index)
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise TedlocError(f"--device mps: MPS is not available on this machine (available: {_available()})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise TedlocError(f"unsupported device {name!r}: use {DEVICE_CHOICES}")
    return device


def _bf16_supported(device: torch.device) -> bool:
    """Native bf16: CUDA GPUs of compute capability 8 (Ampere) or later, CPUs, MPS. (``torch.cuda.
    is_bf16_supported()`` also says yes where bf16 is only emulated, e.g. V100 and T4.)"""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return device.type in ("cpu", "mps")


def resolve_precision(name: str | None, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``name`` on ``device`` (``auto``: bf16 on GPUs that support it)."""
    name = "auto" if name is None else name
    if name == "auto":
        return "bf16" if device.type == "cuda" and _bf16_supported(device) else "fp32"
    if name not in PRECISIONS:
        raise TedlocError(f"unknown precision {name!r}: use auto, fp32, bf16 or fp16")
    if name == "bf16" and not _bf16_supported(device):
        raise TedlocError(f"--precision bf16: {device} ({torch.cuda.get_device_name(device)}) does not support "
                          f"bf16; use fp16 or fp32")
    if name == "fp16" and device.type == "cpu":
        raise TedlocError("--precision fp16 needs a GPU; on the CPU use fp32 or bf16")
    return name


@dataclass(frozen=True)
class Runtime:
    """A device and a precision, resolved and checked, and the job's processes (one unless under torchrun)."""

    device: torch.device
    precision: str
    dist: Distributed = field(default_factory=Distributed)

    def __post_init__(self):
        world = Distributed.env_world_size()
        if world != self.dist.world_size:  # under torchrun a runtime made by hand would run the whole job alone
            raise TedlocError(f"this process is one of {world} (torchrun) but its runtime is of {self.dist.world_size}: "
                              f"make it with Runtime.create(), which joins the job")

    @classmethod
    def create(cls, device: str | torch.device | None = "auto", precision: str | None = "auto",
               timeout_s: float = 1800.0) -> "Runtime":
        """The runtime of ``device`` and ``precision``, resolved (``auto``: the best available) and checked;
        under ``torchrun`` this process joins the job (its CUDA device becomes ``cuda:LOCAL_RANK``)."""
        resolved = resolve_device(device)
        precision = resolve_precision(precision, resolved)
        dist, resolved = Distributed.from_env(resolved, timeout_s)
        return cls(resolved, precision, dist)

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of :attr:`precision`."""
        return PRECISIONS[self.precision]

    @property
    def is_cuda(self) -> bool:
        """Whether the device is a CUDA GPU."""
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast of forward passes to the reduced precision; nothing at fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 training (None otherwise: bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def to_device(self, batch: Any) -> Any:
        """Tensors of ``batch`` (a tensor, or a dict/list/tuple of them) on the device, copied asynchronously."""
        if torch.is_tensor(batch):
            return batch.to(self.device, non_blocking=self.is_cuda)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(v) for v in batch)
        return batch

    def loader_options(self) -> dict:
        """DataLoader keywords for this device (pinned memory for asynchronous copies to CUDA)."""
        return {"pin_memory": self.is_cuda}

    def describe(self) -> dict:
        """What a run's resolved config records."""
        name = torch.cuda.get_device_name(self.device) if self.is_cuda else self.device.type
        return {"device": str(self.device), "device_name": name, "precision": self.precision}

