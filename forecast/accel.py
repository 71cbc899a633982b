"""GPU readiness of the training loop: mixed precision, the large-batch rule, pinned
host-to-device transfers, and a loss sum that stays on the device.

On the CPU every function here is a no-op or returns its input: the CPU path trains as
before. None of it was measured on a GPU in this repository (see docs/benchmarks.md);
`bench/gpu.py` is the script to run when one is available.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["LossSum", "amp_mode", "for_device", "to_device"]


def amp_mode(mode: str, device: torch.device) -> str:
    """The mixed precision `mode` ('auto', 'off', 'bf16', 'fp16') resolves to on
    `device`: 'auto' is 'bf16' on a CUDA GPU that supports it, 'fp16' (with loss
    scaling) on an older one, 'off' elsewhere (CPU, MPS).

    Args:
        mode: `TrainConfig.amp`.
        device: the training device.
    """
    if mode != "auto":
        return mode
    if device.type != "cuda":
        return "off"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def for_device(cfg: Any, device: torch.device) -> Any:
    """The training config to use on `device`: on a CUDA GPU with `cfg.gpu_batch_size`
    set, batches of max(batch_size, gpu_batch_size) windows and the learning rate
    scaled by the square root of the batch ratio (the square-root rule for Adam); the
    config itself elsewhere.

    Args:
        cfg: a `TrainConfig`.
        device: the training device.
    """
    big = getattr(cfg, "gpu_batch_size", None)
    if device.type != "cuda" or big is None or big <= cfg.batch_size:
        return cfg
    return dataclasses.replace(cfg, batch_size=big, lr=cfg.lr * math.sqrt(big / cfg.batch_size))


def to_device(value: Any, device: torch.device) -> Any:
    """Move tensors (also inside lists, tuples and dicts) to `device`; to a CUDA device
    through pinned memory with `non_blocking=True`, so the copy overlaps the step.

    Args:
        value: a batch, or a tensor or container of tensors.
        device: the destination.
    """
    if isinstance(value, Tensor):
        if device.type != "cuda" or value.device.type != "cpu":
            return value.to(device)
        return value.pin_memory().to(device, non_blocking=True)
    if isinstance(value, list | tuple):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


class LossSum:
    """The window-weighted sum of batch losses, kept on the device: adding is a tensor
    op (no host-device sync per step); `mean()` syncs once, at the end of the epoch."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def add(self, loss: Tensor, n: int) -> None:
        """Add a batch's mean loss over `n` windows."""
        weighted = loss.detach() * n
        self.total = weighted if self.total is None else self.total + weighted
        self.count += n

    def sum(self) -> float:
        """The window-weighted sum of the losses (one `.item()`); 0 when nothing was added."""
        return 0.0 if self.total is None else self.total.item()

    def mean(self) -> float:
        """The mean loss per window (one `.item()`); NaN when nothing was added."""
        return math.nan if self.total is None else self.total.item() / self.count
