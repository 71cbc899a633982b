"""Permutation importance for any `Forecaster`, baselines included.

One evaluation batch of (at most `max_windows`) windows is drawn once. A feature's
importance is how much the MSE (scaled space) grows when that feature's values are
permuted *across the windows of that batch*: every window keeps its own other inputs
but receives the whole input series of that feature from another window. For a known
covariate the future part moves together with the past part (both are the same series).
For the targets only their past moves; the labels never do.

Per lag block the permutation moves, for a block of consecutive encoder positions, the
values of every encoder feature at once (one permutation shared by the block's cells).

Each permutation is repeated `n_repeats` times with `np.random.default_rng(seed)`; the
result is the mean increase and a 95% t-interval over the repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.interpret._common import ENCODER_FIELDS, eval_batch, lag_axis, mse, progress_bar
from forecast.models.base import Forecaster

IMPORTANCE_COLUMNS = ["importance", "ci_low", "ci_high", "std", "baseline_mse", "n_repeats"]


def feature_roles(layout: WindowLayout) -> list[tuple[str, str, str, int]]:
    """(feature, role, batch field, column) for every encoder feature, in order.

    Args:
        layout: the window layout.
    """
    rows = [(n, "target", "past_target", i) for i, n in enumerate(layout.targets)]
    rows += [(n, "past", "past_covariates", i) for i, n in enumerate(layout.past_covariates)]
    rows += [(n, "known", "past_known", i) for i, n in enumerate(layout.known_covariates)]
    return rows


def mean_interval(increases: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, 95% t-interval and std of the repeats (NaN interval for one repeat)."""
    mean = float(increases.mean())
    if len(increases) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(increases.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(increases) - 1)) * std / np.sqrt(len(increases))
    return mean, mean - half, mean + half, std


def _setup(
    model: Forecaster,
    ds: WindowDataset,
    n_repeats: int,
    max_windows: int | None,
    seed: int,
    batch_size: int,
) -> tuple[Batch, np.random.Generator, float]:
    """The evaluation batch, the permutations' generator and the baseline MSE."""
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    batch = eval_batch(ds, max_windows, seed)
    n = len(batch["origin"])
    if n < 2:
        raise ValueError(f"permutation importance needs at least 2 windows, got {n}")
    return batch, np.random.default_rng(seed), mse(model, batch, batch_size)


def _repeat(
    model: Forecaster,
    permute: Callable[[Tensor], Batch],
    n: int,
    base: float,
    n_repeats: int,
    rng: np.random.Generator,
    bar: Any,
    batch_size: int,
) -> tuple[float, float, float, float]:
    """`mean_interval` of the MSE increases over `n_repeats` draws of `permute(perm)`, each
    with a fresh permutation `perm` of the batch's `n` windows."""
    increases = []
    for _ in range(n_repeats):
        perm = torch.from_numpy(rng.permutation(n))
        increases.append(mse(model, permute(perm), batch_size) - base)
        bar.update(1)
    return mean_interval(np.asarray(increases))


def permutation_importance(
    model: Forecaster,
    ds: WindowDataset,
    *,
    n_repeats: int = 5,
    max_windows: int | None = 1024,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Increase in MSE when each encoder feature is permuted across windows.

    Returns one row per feature of `layout.encoder_features` (in that order) with columns
    feature, role ('target', 'past', 'known'), importance (mean MSE increase), ci_low,
    ci_high (95% t-interval over repeats), std, baseline_mse, n_repeats, n_windows, rank
    (1 = most important).

    Args:
        model: a fitted forecaster.
        ds: evaluation windows (e.g. `bundle.test`).
        n_repeats: permutations per feature.
        max_windows: windows in the evaluation batch (a seeded random subset); None = all.
        seed: seeds the subset and the permutations.
        batch_size: windows per forward pass.
        progress: show a tqdm bar.
    """
    batch, rng, base = _setup(model, ds, n_repeats, max_windows, seed, batch_size)
    n = len(batch["origin"])
    roles = feature_roles(ds.layout)
    bar = progress_bar(len(roles) * n_repeats, "permutation", progress)
    rows = []
    for name, role, key, col in roles:
        # the future of a known covariate is the same series: it moves with the past
        keys = [key, "future_known"] if role == "known" else [key]

        def permute(perm: Tensor, keys: list[str] = keys, col: int = col) -> Batch:
            permuted = dict(batch)
            for k in keys:
                permuted[k] = batch[k].clone()
                permuted[k][:, :, col] = batch[k][perm, :, col]
            return permuted

        mean, lo, hi, std = _repeat(model, permute, n, base, n_repeats, rng, bar, batch_size)
        rows.append([name, role, mean, lo, hi, std, base, n_repeats, n])
    bar.close()
    frame = pd.DataFrame(rows, columns=["feature", "role", *IMPORTANCE_COLUMNS, "n_windows"])
    frame["rank"] = frame["importance"].rank(ascending=False, method="first").astype(int)
    return frame


def lag_blocks(input_length: int, block: int) -> list[tuple[int, int]]:
    """Encoder position ranges [lo, hi) of `block` lags each, newest block first.

    Args:
        input_length: L.
        block: lags per block; the oldest block may be shorter.
    """
    if block < 1:
        raise ValueError(f"lag block size must be >= 1, got {block}")
    out = []
    hi = input_length
    while hi > 0:
        out.append((max(0, hi - block), hi))
        hi -= block
    return out


def lag_permutation_importance(
    model: Forecaster,
    ds: WindowDataset,
    *,
    block: int | None = None,
    n_repeats: int = 5,
    max_windows: int | None = 1024,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Increase in MSE when a block of lags (all encoder features) is permuted across windows.

    Returns one row per block, newest first, with columns lag_min, lag_max (in steps),
    lag_time_min, lag_time_max, lag_unit, label, importance, ci_low, ci_high, std,
    baseline_mse, n_repeats, n_windows.

    Args:
        model: a fitted forecaster.
        ds: evaluation windows.
        block: lags per block; default about L / 12, at least 1.
        n_repeats: permutations per block.
        max_windows: windows in the evaluation batch (a seeded random subset); None = all.
        seed: seeds the subset and the permutations.
        batch_size: windows per forward pass.
        progress: show a tqdm bar.
    """
    layout = ds.layout
    L = layout.input_length
    block = block or max(1, round(L / 12))
    batch, rng, base = _setup(model, ds, n_repeats, max_windows, seed, batch_size)
    n = len(batch["origin"])
    lags, lag_time, unit = lag_axis(layout)
    blocks = lag_blocks(L, block)
    bar = progress_bar(len(blocks) * n_repeats, "lag permutation", progress)
    rows = []
    for lo, hi in blocks:

        def permute(perm: Tensor, lo: int = lo, hi: int = hi) -> Batch:
            permuted: Batch = dict(batch)
            for key in ENCODER_FIELDS:
                permuted[key] = batch[key].clone()
                permuted[key][:, lo:hi] = batch[key][perm, lo:hi]
            return permuted

        mean, ci_lo, ci_hi, std = _repeat(model, permute, n, base, n_repeats, rng, bar, batch_size)
        lag_min, lag_max = int(lags[hi - 1]), int(lags[lo])
        rows.append(
            [lag_min, lag_max, lag_time[hi - 1], lag_time[lo], unit, f"lags {lag_min}-{lag_max}"]
            + [mean, ci_lo, ci_hi, std, base, n_repeats, n]
        )
    bar.close()
    columns = ["lag_min", "lag_max", "lag_time_min", "lag_time_max", "lag_unit", "label"]
    return pd.DataFrame(rows, columns=[*columns, *IMPORTANCE_COLUMNS, "n_windows"])
