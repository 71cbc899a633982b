"""Mixed precision for a training run: autocast and loss scaling (see
`forecast.training.TrainConfig.amp`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from forecast.accel import amp_mode

__all__ = ["Precision", "cpu_has_bf16"]


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (its LSTM refuses it otherwise)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Precision:
    """Autocast and loss scaling for one training run (a no-op when AMP is off).

    Args:
        mode: `forecast.training.TrainConfig.amp`.
        device: the training device.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        mode = amp_mode(mode, device)  # 'auto' -> bf16/fp16 on CUDA, else off
        if mode == "fp16" and device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {device.type!r}")
        if mode == "bf16" and device.type == "cpu" and not cpu_has_bf16():
            raise ValueError(
                "amp='bf16' on the CPU needs bfloat16 instructions (AVX512-BF16 or AMX), "
                "which this CPU lacks; use amp='off'"
            )
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self) -> Any:
        """The autocast context of the forward pass (disabled when AMP is off)."""
        return torch.autocast(self.device_type, self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:  # clip the true gradients, not the scaled ones
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
