"""Integrated gradients (Sundararajan et al., 2017) per input cell, for torch models.

Own implementation rather than Captum: Captum is well kept, but it would be a new
dependency for about sixty lines, and its attribution API expects a tuple of input
tensors, so our dict-of-tensors batches (and fields that must not be attributed, like
`origin` or `future_target`) would need an adapter anyway.

For inputs x, a baseline x' and a scalar output f (by default the sum of the forecast
over steps and targets, per window):

    IG_i(x) = (x_i - x'_i) * integral_0^1 df(x' + a (x - x')) / dx_i da

The integral is the trapezoid rule on `steps` equal intervals (steps + 1 points). All
points of a chunk of windows go through the network as one batch, and one backward pass
gives every gradient. Completeness: sum_i IG_i = f(x) - f(x') up to the quadrature
error; `Attribution.delta` holds the gap per window so callers can check it.

The network runs in eval mode (no dropout) with `teacher_forcing=0.0`, as at test time,
and gradients flow through RevIN's per-window statistics (which training detaches), so
the attributions explain the whole function and completeness holds with RevIN too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowDataset
from forecast.interpret._common import INPUT_FIELDS, chunks, eval_batch, progress_bar
from forecast.interpret.importance import feature_roles
from forecast.models.base import Forecaster, ForecastOutput

BASELINES = ("zero", "mean")


@dataclass
class Attribution:
    """Integrated gradients of a batch.

    Args:
        inputs: field name -> attributions shaped like the field ([B, L, .] or [B, H, K]).
        f_input: [B] output at the inputs.
        f_baseline: [B] output at the baseline.
        delta: [B] completeness gap: sum of attributions - (f_input - f_baseline).
    """

    inputs: dict[str, Tensor]
    f_input: Tensor
    f_baseline: Tensor
    delta: Tensor


def _network(model: Forecaster | nn.Module) -> tuple[nn.Module, torch.device]:
    net = getattr(model, "network", model)
    if net is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted: its network is None")
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"integrated gradients needs a torch model (a TorchForecaster or an nn.Module), "
            f"got {type(model).__name__}; use permutation_importance for other models"
        )
    param = next(net.parameters(), None)
    return net, getattr(model, "device", param.device if param is not None else "cpu")


@contextmanager
def _through_revin(net: nn.Module) -> Iterator[None]:
    """Let gradients through every RevIN's statistics inside the block."""
    mods = [m for m in net.modules() if hasattr(m, "detach_stats")]
    for m in mods:
        m.detach_stats = False
    try:
        yield
    finally:
        for m in mods:
            m.detach_stats = True


def _sum_output(prediction: Tensor) -> Tensor:
    return prediction.flatten(1).sum(dim=1)  # [B, H, T] -> [B]


def baseline_batch(batch: Batch, baseline: str | Batch = "zero") -> Batch:
    """The baseline inputs: zeros (the training mean in the scaled space), the batch mean
    of each column over windows and time, or a given dict of tensors.

    Args:
        batch: the inputs.
        baseline: 'zero', 'mean' or a dict with the fields in `INPUT_FIELDS`.
    """
    if isinstance(baseline, dict):
        missing = [k for k in INPUT_FIELDS if k not in baseline]
        if missing:
            raise ValueError(f"the baseline dict lacks the field(s) {missing}")
        return {k: baseline[k].expand_as(batch[k]) for k in INPUT_FIELDS}
    if baseline == "zero":
        return {k: torch.zeros_like(batch[k]) for k in INPUT_FIELDS}
    if baseline == "mean":
        return {
            k: batch[k].mean(dim=(0, 1), keepdim=True).expand_as(batch[k])
            if batch[k].numel()
            else batch[k]
            for k in INPUT_FIELDS
        }
    raise ValueError(f"unknown baseline {baseline!r}; expected one of {list(BASELINES)} or a dict")


def integrated_gradients(
    model: Forecaster | nn.Module,
    batch: Batch,
    *,
    baseline: str | Batch = "zero",
    steps: int = 32,
    output: Callable[[Tensor], Tensor] | None = None,
    internal_batch_size: int = 1024,
) -> Attribution:
    """Integrated gradients of every input cell of `batch` (trapezoid rule, batched).

    Args:
        model: a fitted `TorchForecaster` (its `.network` is used) or an `nn.Module` whose
            `forward(batch, teacher_forcing=0.0)` returns a ForecastOutput or a tensor.
        batch: the windows, as from `WindowDataset.batch`.
        baseline: 'zero', 'mean' or a dict of baseline tensors (see `baseline_batch`).
        steps: trapezoid intervals along the path (steps + 1 network evaluations).
        output: maps the prediction [B, H, T] to the explained scalar per window [B];
            the sum over steps and targets by default.
        internal_batch_size: windows x path points per forward pass.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    net, device = _network(model)
    output = output or _sum_output
    was_training = net.training
    net.eval()
    alphas = torch.linspace(0.0, 1.0, steps + 1, device=device)  # [S]
    weights = torch.full((steps + 1,), 1.0 / steps, device=device)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid rule
    S = steps + 1
    base_all = baseline_batch(batch, baseline)
    attrs: dict[str, list[Tensor]] = {k: [] for k in INPUT_FIELDS}
    f_in, f_base = [], []
    per_chunk = max(1, internal_batch_size // S)
    offsets = range(0, len(batch["origin"]), per_chunk)
    # cuDNN's RNN backward refuses eval mode; the native kernels do not.
    cudnn_off = torch.backends.cudnn.flags(enabled=False)
    try:
        with cudnn_off, _through_revin(net):
            for lo, part in zip(offsets, chunks(batch, per_chunk)):
                b = len(part["origin"])
                part = {k: v.to(device) for k, v in part.items()}
                base = {k: v[lo : lo + b].to(device) for k, v in base_all.items()}
                path = {
                    k: v.repeat_interleave(S, 0) if k not in INPUT_FIELDS else None
                    for k, v in part.items()
                }
                leaves = {}
                for k in INPUT_FIELDS:
                    x, x0 = part[k].float(), base[k].float()
                    shape = (1, S) + (1,) * (x.dim() - 1)
                    # [b, S, ...] -> [b * S, ...]: window-major, so windows stay contiguous
                    pts = x0[:, None] + alphas.view(shape) * (x - x0)[:, None]
                    leaves[k] = pts.reshape(b * S, *x.shape[1:]).requires_grad_(True)
                    path[k] = leaves[k]
                out = net(path, teacher_forcing=0.0)
                pred = out.prediction if isinstance(out, ForecastOutput) else out
                f = output(pred)  # [b * S]
                grads = torch.autograd.grad(f.sum(), list(leaves.values()), allow_unused=True)
                f = f.detach().view(b, S)
                f_in.append(f[:, -1].cpu())
                f_base.append(f[:, 0].cpu())
                for (k, leaf), g in zip(leaves.items(), grads):
                    g = torch.zeros_like(leaf) if g is None else g
                    g = g.view(b, S, *leaf.shape[1:])
                    avg = (g * weights.view((1, S) + (1,) * (g.dim() - 2))).sum(dim=1)
                    attrs[k].append(((part[k].float() - base[k].float()) * avg).detach().cpu())
    finally:
        net.train(was_training)
    inputs = {k: torch.cat(v) for k, v in attrs.items()}
    f_input, f_baseline = torch.cat(f_in), torch.cat(f_base)
    total = sum(v.flatten(1).sum(dim=1) for v in inputs.values())
    return Attribution(inputs, f_input, f_baseline, total - (f_input - f_baseline))


@dataclass
class GradientImportance:
    """Integrated gradients aggregated over windows.

    Args:
        cells: [L, F] mean |attribution| per encoder step and encoder feature.
        future: [H, K] mean |attribution| of the known covariates' future values.
        features: per-feature table: feature, role, importance (mean over windows of
            the sum of |attribution| over time, the future part included), share, rank.
        delta: [N] completeness gap per window.
        relative_delta: max |delta| / mean |f(x) - f(baseline)|.
        baseline: the baseline used.
        steps: trapezoid intervals.
        step_map: [H, L] with `per_step`: mean |attribution| per input step (summed over
            features) of each forecast step's own output, the same shape as temporal
            attention; None otherwise.
    """

    cells: np.ndarray
    future: np.ndarray
    features: pd.DataFrame
    delta: np.ndarray
    relative_delta: float
    baseline: str
    steps: int
    step_map: np.ndarray | None = None

    @property
    def trusted(self) -> bool:
        """Whether completeness holds (gap <= `MAX_GAP`): otherwise no verdict."""
        return self.relative_delta <= MAX_GAP


MAX_GAP = 0.05
"""Largest completeness gap (relative) at which attributions are read as evidence."""


def gradient_importance(
    model: Forecaster | nn.Module,
    ds: WindowDataset,
    *,
    baseline: str = "zero",
    steps: int = 32,
    max_windows: int | None = 256,
    seed: int = 0,
    internal_batch_size: int = 1024,
    per_step: bool = False,
    progress: bool = False,
) -> GradientImportance:
    """Integrated gradients over (a seeded subset of) `ds`, aggregated per cell and feature.

    Args:
        model: a fitted torch forecaster or network (see `integrated_gradients`).
        ds: evaluation windows.
        baseline: 'zero' or 'mean'.
        steps: trapezoid intervals.
        max_windows: windows attributed (a seeded random subset); None = all.
        seed: seed of the subset.
        internal_batch_size: windows x path points per forward pass.
        per_step: also attribute every forecast step's own output (H more passes):
            `step_map`.
        progress: show a tqdm bar.
    """
    batch = eval_batch(ds, max_windows, seed)
    per = max(1, internal_batch_size // (steps + 1)) * 4
    parts = list(chunks(batch, per))
    bar = progress_bar(len(parts), "integrated gradients", progress)
    results = []
    for part in parts:
        results.append(
            integrated_gradients(
                model, part, baseline=baseline, steps=steps, internal_batch_size=internal_batch_size
            )
        )
        bar.update(1)
    bar.close()
    a = {k: torch.cat([r.inputs[k] for r in results]).abs() for k in INPUT_FIELDS}
    grid = torch.cat([a["past_target"], a["past_covariates"], a["past_known"]], dim=-1)
    cells = grid.mean(dim=0).numpy()  # [L, F]
    future = a["future_known"].mean(dim=0).numpy()  # [H, K]
    per_window = grid.sum(dim=1)  # [N, F]
    layout = ds.layout
    nk = layout.n_known
    if nk:
        per_window[:, -nk:] += a["future_known"].sum(dim=1)
    importance = per_window.mean(dim=0).numpy()
    roles = feature_roles(layout)
    features = pd.DataFrame(
        {
            "feature": [r[0] for r in roles],
            "role": [r[1] for r in roles],
            "importance": importance,
            "share": importance / max(float(importance.sum()), 1e-12),
        }
    )
    features["rank"] = features["importance"].rank(ascending=False, method="first").astype(int)
    delta = torch.cat([r.delta for r in results]).numpy()
    gap = torch.cat([r.f_input - r.f_baseline for r in results]).abs().mean().item()
    step_map = None
    if per_step:
        rows = []
        for h in range(layout.horizon):
            cells_h = []
            for part in parts:
                att = integrated_gradients(
                    model,
                    part,
                    baseline=baseline,
                    steps=steps,
                    internal_batch_size=internal_batch_size,
                    output=lambda p, h=h: p[:, h].sum(dim=-1),
                ).inputs
                grid_h = torch.cat(
                    [att["past_target"], att["past_covariates"], att["past_known"]], dim=-1
                )
                cells_h.append(grid_h.abs().sum(dim=-1))  # [b, L]
            rows.append(torch.cat(cells_h).mean(dim=0).numpy())
        step_map = np.stack(rows)  # [H, L]
    return GradientImportance(
        cells=cells,
        future=future,
        features=features,
        delta=delta,
        relative_delta=float(np.abs(delta).max() / max(gap, 1e-12)),
        step_map=step_map,
        baseline=baseline,
        steps=steps,
    )
