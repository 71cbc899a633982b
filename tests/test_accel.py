"""forecast.accel on the CPU: mixed precision resolution (a faked CUDA capability),
the GPU-only large-batch rule, pinned transfers only to CUDA, and a training step
without a host-device sync per batch."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from forecast import accel
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.models.registry import create_model
from forecast.precision import Precision as _Precision
from forecast.training import TrainConfig

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_amp_auto_is_off_on_cpu_and_follows_the_gpu(monkeypatch):
    assert accel.amp_mode("auto", CPU) == "off"
    assert _Precision("auto", CPU).dtype is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert accel.amp_mode("auto", CUDA) == "bf16"
    assert _Precision("auto", CUDA).dtype is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert accel.amp_mode("auto", CUDA) == "fp16"  # with loss scaling (_Precision.scaler)
    assert accel.amp_mode("off", CUDA) == "off" and accel.amp_mode("bf16", CPU) == "bf16"


def test_large_batch_rule_on_gpu_only():
    cfg = TrainConfig(batch_size=64, lr=1e-3)
    assert accel.for_device(cfg, CPU) is cfg
    gpu = accel.for_device(cfg, CUDA)
    assert gpu.batch_size == 256 and gpu.lr == pytest.approx(2e-3)  # sqrt(256 / 64) = 2
    assert accel.for_device(dataclasses.replace(cfg, gpu_batch_size=None), CUDA).batch_size == 64
    assert accel.for_device(dataclasses.replace(cfg, batch_size=512), CUDA).batch_size == 512
    with pytest.raises(ValueError, match="gpu_batch_size must be >= 1 or None, got 0"):
        TrainConfig(gpu_batch_size=0)


def test_pinned_non_blocking_transfer_only_to_cuda(monkeypatch):
    pinned, moved = [], []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned.append(t) or t)
    real_to = torch.Tensor.to

    def fake_to(t, device, non_blocking=False):
        moved.append((torch.device(device).type, non_blocking))
        return t if torch.device(device).type == "cuda" else real_to(t, device)

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    batch = {"x": torch.zeros(2), "pair": [torch.ones(1), 3]}
    accel.to_device(batch, CPU)
    assert pinned == [] and moved == [("cpu", False), ("cpu", False)]
    moved.clear()
    out = accel.to_device(batch, CUDA)
    assert len(pinned) == 2 and moved == [("cuda", True), ("cuda", True)]
    assert out["pair"][1] == 3


def test_loss_sum_syncs_once():
    losses = accel.LossSum()
    assert math.isnan(losses.mean())
    losses.add(torch.tensor(1.0), 2)
    losses.add(torch.tensor(4.0), 1)
    assert losses.mean() == pytest.approx(2.0) and losses.count == 3


@pytest.mark.parametrize("name", ["dlinear", "segrnn", "transformer", "lstm"])
def test_training_step_does_not_sync_per_batch(name, monkeypatch):
    layout = WindowLayout(8, 2, ("y",), ())
    ds = WindowDataset(torch.randn(200, 1), np.arange(150), layout, np.zeros(150, np.int32))
    calls = {"item": 0, "cpu": 0, "bool": 0}

    def count(method: str):
        real = getattr(torch.Tensor, method)

        def wrapper(t, *args, **kwargs):
            calls[method.strip("_")] += 1
            return real(t, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, wrapper)

    for method in ("item", "cpu", "__bool__"):
        count(method)
    model = create_model(name, layout, epochs=2, batch_size=10, progress=False, threads=1)
    model.fit(ds)  # 2 epochs x 15 batches, no validation
    # One .item() per epoch (2), plus at most a couple once per fit: not one per batch (30).
    assert calls["item"] <= 4 and calls["cpu"] == 0
    # bool(): at most once per fit (lstm reads its phase flag when the best weights are
    # restored), never per batch.
    assert calls["bool"] <= 1
