"""Helpers shared by the interpretation modules: lag axes, window picks, the encoder grid.

The encoder grid is the [B, L, F] view every attribution method works on: the columns of
`past_target`, `past_covariates` and `past_known` side by side, in the order of
`WindowLayout.encoder_features` (the same order the feature attention uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pandas.tseries.frequencies import to_offset
from torch import Tensor
from tqdm.auto import tqdm

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.io import atomic_write
from forecast.models.base import Forecaster

ENCODER_FIELDS = ("past_target", "past_covariates", "past_known")
INPUT_FIELDS = (*ENCODER_FIELDS, "future_known")

_UNITS = (
    ("min", pd.Timedelta(minutes=1)),
    ("h", pd.Timedelta(hours=1)),
    ("d", pd.Timedelta(days=1)),
)


def lag_unit(freq: str) -> tuple[float | None, str]:
    """How long one row is, in the unit used to label lags: `(size, unit)`.

    Sub-hourly steps are counted in minutes, sub-daily in hours, longer fixed steps in
    days; a calendar frequency (months, years) has no fixed length: `(None, freq)`.

    Args:
        freq: pandas frequency alias of the series.

    >>> lag_unit("h"), lag_unit("15min"), lag_unit("D"), lag_unit("MS")
    ((1.0, 'h'), (15.0, 'min'), (1.0, 'd'), (None, 'MS'))
    """
    try:
        step = pd.Timedelta(to_offset(freq))
    except (ValueError, TypeError):
        return None, freq
    name, size = _UNITS[0]
    for unit_name, unit_size in _UNITS:
        if step >= unit_size:
            name, size = unit_name, unit_size
    return step / size, name


def lag_axis(layout: WindowLayout) -> tuple[np.ndarray, np.ndarray, str]:
    """Lag of every encoder position j: `(lag in steps, lag in time units, unit label)`.

    lag = L - 1 - j: the last input step (the forecast origin) has lag 0. The unit is the
    step's own (minutes, hours, days), but minutes become hours when the longest lag
    exceeds 3 hours, and hours become days beyond 500 hours (a 336-step window of
    15-minute data reads 0-84 h, not 0-5,025 min).

    Args:
        layout: the window layout (input length and frequency).
    """
    L = layout.input_length
    lags = L - 1 - np.arange(L)
    size, unit = lag_unit(layout.freq)
    if size is None:
        return lags, lags.astype(float), f"steps of {unit}"
    if unit == "min" and (L - 1) * size > 180:
        size, unit = size / 60.0, "h"
    if unit == "h" and (L - 1) * size > 500:
        size, unit = size / 24.0, "d"
    return lags, lags * size, unit


def pick_windows(n: int, max_windows: int | None, seed: int = 0) -> np.ndarray:
    """Positions of at most `max_windows` windows out of `n`, sorted (random, seeded).

    Args:
        n: windows available.
        max_windows: cap; None keeps all.
        seed: seed of the draw.
    """
    if n == 0:
        raise ValueError("the dataset has no windows to interpret")
    if max_windows is None or n <= max_windows:
        return np.arange(n)
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    return np.sort(np.random.default_rng(seed).choice(n, max_windows, replace=False))


def encoder_grid(batch: Batch) -> Tensor:
    """[B, L, F] encoder inputs in `encoder_features` order."""
    return torch.cat([batch[k] for k in ENCODER_FIELDS], dim=-1)


def with_encoder_grid(batch: Batch, grid: Tensor, layout: WindowLayout) -> Batch:
    """A copy of `batch` whose encoder fields are the columns of `grid` [B, L, F]."""
    nt, npast = layout.n_targets, layout.n_past
    out = dict(batch)
    out["past_target"] = grid[..., :nt]
    out["past_covariates"] = grid[..., nt : nt + npast]
    out["past_known"] = grid[..., nt + npast :]
    return out


def chunks(batch: Batch, size: int) -> Iterator[Batch]:
    """Split a batch into batches of at most `size` windows."""
    n = len(batch["origin"])
    for lo in range(0, n, size):
        yield {k: v[lo : lo + size] for k, v in batch.items()}


def predict(model: Forecaster, batch: Batch, batch_size: int = 512) -> Tensor:
    """Predictions [B, H, T] for a (possibly large) batch, in chunks, without gradients
    and without attention maps (chunks capped by the model's `max_batch`)."""
    limit = model.max_batch(False)
    size = batch_size if limit is None else min(batch_size, limit)
    with torch.no_grad():
        parts = [
            model.predict_batch(b, attention=False).prediction.float().cpu()
            for b in chunks(batch, size)
        ]
    return torch.cat(parts)


def mse(model: Forecaster, batch: Batch, batch_size: int = 512) -> float:
    """Mean squared error of `model` over every window, step and target of `batch`."""
    err = predict(model, batch, batch_size) - batch["future_target"].float()
    return float(err.pow(2).mean())


def eval_batch(ds: WindowDataset, max_windows: int | None, seed: int) -> Batch:
    """One batch of (at most `max_windows`) evaluation windows, cloned so it can be edited."""
    idx = pick_windows(len(ds), max_windows, seed)
    return {k: v.clone() for k, v in ds.batch(idx).items()}


def save_figure(
    fig: Figure, data: pd.DataFrame | None, path: str | Path, dpi: int = 110
) -> tuple[Path, Path | None]:
    """Write `fig` as PNG at `path` and its data as CSV beside it (same name, `.csv`).

    Args:
        fig: the figure.
        data: the data drawn; None writes only the PNG.
        path: destination of the PNG (the suffix is set to `.png`).
        dpi: resolution.
    """
    png = Path(path).with_suffix(".png")
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=dpi, bbox_inches="tight"))
    if data is None:
        return png, None
    csv = png.with_suffix(".csv")
    atomic_write(csv, lambda p: data.to_csv(p, index=False))
    return png, csv


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar that `enabled=False` turns off (library code never prints otherwise)."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)
