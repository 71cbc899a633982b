"""Checks an attention map must pass before it counts as evidence.

A map is a distribution; it can look structured and still explain nothing. These checks
turn "the map peaks near the truth" into numbers with an uncertainty and a verdict:

- `temporal_truth_check`: against a known driver lag, the mass within +-window steps of
  the true input position as a multiple of what uniform attention gives there, with a
  moving-block bootstrap interval over windows (neighbouring windows overlap, so a plain
  standard error would be too narrow); the same ratio at the lags a correlated distractor
  would suggest; the entropy as a share of the maximum; the peak lag per forecast step
  and its slope across steps (a driver at a fixed lag moves the peak one lag per step:
  slope -1). Below `UNIFORM_RATIO` the verdict is "indistinguishable from uniform".
- `feature_truth_check`: the driver's share of the feature attention against 1 / F, and
  its rank.
- `attention_ablation`: the test MSE when the temporal attention weights are replaced
  by uniform ones (`uniform_temporal_attention`); if the forecast barely changes, the
  map explains nothing, whatever it looks like.
- `untrained_copy`: the same model with fresh weights, whose maps any check should call
  uniform (a check that passes an untrained model is fooled).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from forecast.data.synthetic import GroundTruth
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.interpret._common import eval_batch, mse
from forecast.models.base import Forecaster

UNIFORM_RATIO = 1.2
"""A map whose mass near the truth is below this multiple of uniform is called uniform."""


@dataclass
class TemporalCheck:
    """Temporal attention against a known lag (see `temporal_truth_check`).

    Args:
        mass_ratio: mass within +-window of the true positions / the uniform share.
        ci: 95% moving-block bootstrap interval of `mass_ratio` over windows.
        mass: that mass (mean over steps and windows); uniform: the uniform share.
        entropy: mean entropy of the step maps as a share of log L (1 = uniform).
        peak_lags: per forecast step (1..H), the lag (from the origin) of the mean map's
            peak; true_lags: where it should be.
        slope: least-squares slope of peak lag against step (-1 for a fixed lag).
        distractors: per correlated distractor, its suggested lag (from the target) and
            the mass ratio there.
        verdict: one sentence.
        steps: the per-step table (step, true_lag, mass, uniform, peak_lag).
    """

    mass_ratio: float
    ci: tuple[float, float]
    mass: float
    uniform: float
    entropy: float
    peak_lags: list[int]
    true_lags: list[int]
    slope: float
    distractors: dict[str, dict[str, float]] = field(default_factory=dict)
    verdict: str = ""
    steps: pd.DataFrame | None = None

    @property
    def uniform_like(self) -> bool:
        """Whether the map is indistinguishable from uniform near the truth."""
        return self.mass_ratio < UNIFORM_RATIO

    def summary(self) -> dict:
        """A flat dict for JSON."""
        return {
            "mass_ratio": self.mass_ratio,
            "mass_ratio_ci": list(self.ci),
            "mass": self.mass,
            "uniform_mass": self.uniform,
            "entropy": self.entropy,
            "peak_lags": self.peak_lags,
            "true_lags": self.true_lags,
            "peak_slope": self.slope,
            "distractors": self.distractors,
            "indistinguishable_from_uniform": self.uniform_like,
            "verdict": self.verdict,
        }


def _step_masses(maps: np.ndarray, positions: list[int], window: int) -> np.ndarray:
    """[N, S] mass of each map [N, H, L] within +-window of each relevant step's position."""
    L = maps.shape[-1]
    out = []
    for h, j in positions:
        lo, hi = max(0, j - window), min(L, j + window + 1)
        out.append(maps[:, h - 1, lo:hi].sum(axis=-1))
    return np.stack(out, axis=1)


def _positions(lag: int, layout: WindowLayout) -> list[tuple[int, int]]:
    """(step h from 1, encoder position) where the input `lag` rows before the target
    lies inside the window."""
    L, H = layout.input_length, layout.horizon
    return [(h, L - 1 - (lag - h)) for h in range(1, H + 1) if 0 <= L - 1 - (lag - h) < L]


def _uniform_share(positions: list[tuple[int, int]], L: int, window: int) -> float:
    return float(np.mean([min(L, j + window + 1) - max(0, j - window) for _, j in positions])) / L


def block_bootstrap(values: np.ndarray, block: int, n_boot: int = 500, seed: int = 0) -> tuple:
    """95% interval of the mean of `values` [N] (in time order) by a moving-block bootstrap.

    Args:
        values: one statistic per window, windows in time order.
        block: block length in windows (overlapping windows stay together).
        n_boot: resamples.
        seed: seed of the resampling.
    """
    n = len(values)
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[..., None] + np.arange(block)).reshape(n_boot, -1)[:, :n]
    means = values[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _verdict(ratio: float, ci: tuple[float, float]) -> str:
    if ratio < UNIFORM_RATIO:
        return (
            f"indistinguishable from uniform: {ratio:.2f}x the uniform mass near the true lag "
            f"(below {UNIFORM_RATIO}); this map is no evidence of where the model looked"
        )
    if ci[0] < UNIFORM_RATIO:
        return (
            f"above uniform ({ratio:.2f}x near the true lag) but not clearly: the 95% "
            f"interval {ci[0]:.2f}-{ci[1]:.2f} reaches {UNIFORM_RATIO}"
        )
    return f"concentrated near the true lag: {ratio:.2f}x uniform (95% {ci[0]:.2f}-{ci[1]:.2f})"


def temporal_truth_check(
    maps: np.ndarray,
    truth: GroundTruth,
    layout: WindowLayout,
    *,
    window: int = 2,
    seed: int = 0,
) -> TemporalCheck:
    """Check temporal attention maps against the driver's known lag.

    Args:
        maps: [N, H, L] temporal attention of N windows in time order (a subsample is
            fine), or [H, L] for a mean map (then the interval is a point).
        truth: the generating process (driver lag, correlated distractors).
        layout: the windows' layout.
        window: half-width in steps of the neighbourhood counted as "near".
        seed: seed of the bootstrap.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    N, H, L = maps.shape
    if (H, L) != (layout.horizon, layout.input_length):
        raise ValueError(
            f"maps are [{H}, {L}] per window; the layout needs [horizon, input_length] = "
            f"[{layout.horizon}, {layout.input_length}]"
        )
    pos = _positions(truth.lag, layout)
    if not pos:
        raise ValueError(
            f"the driver's lag {truth.lag} puts its input outside every window of "
            f"input_length {L}: nothing to check"
        )
    uniform = _uniform_share(pos, L, window)
    per_window = _step_masses(maps, pos, window).mean(axis=1)  # [N]
    mass = float(per_window.mean())
    ratio = mass / uniform
    lo, hi = block_bootstrap(per_window, block=L, seed=seed) if N > 1 else (mass, mass)
    ci = (lo / uniform, hi / uniform)
    mean = maps.mean(axis=0)  # [H, L]
    peaks = [int(L - 1 - np.argmax(mean[h - 1])) for h in range(1, H + 1)]
    slope = float(np.polyfit(np.arange(1, H + 1), peaks, 1)[0]) if H > 1 else float("nan")
    p = np.clip(maps, 1e-12, None)
    entropy = float((-(p * np.log(p)).sum(-1)).mean() / np.log(L))
    distractors = {}
    for name, lag in truth.distractor_lags:
        dpos = _positions(lag, layout)
        if dpos:
            dm = float(_step_masses(maps, dpos, 0).mean())
            distractors[name] = {"lag": lag, "mass_ratio": dm / (1.0 / L)}
    steps = pd.DataFrame(
        {
            "step": [h for h, _ in pos],
            "true_lag": [truth.lag - h for h, _ in pos],
            "mass": _step_masses(maps, pos, window).mean(axis=0),
            "peak_lag": [peaks[h - 1] for h, _ in pos],
        }
    )
    return TemporalCheck(
        mass_ratio=ratio,
        ci=ci,
        mass=mass,
        uniform=uniform,
        entropy=entropy,
        peak_lags=peaks,
        true_lags=[truth.lag - h for h in range(1, H + 1)],
        slope=slope,
        distractors=distractors,
        verdict=_verdict(ratio, ci),
        steps=steps,
    )


def feature_truth_check(importance: pd.Series, truth: GroundTruth) -> dict:
    """The driver's place in a feature importance (e.g. feature attention shares).

    Uniform is 1 / (number of features with a score), as attention spread evenly over
    the features it can weigh would give.

    Args:
        importance: feature -> share (any non-negative scores; normalised here).
        truth: the generating process.
    """
    if truth.driver not in importance.index:
        raise ValueError(
            f"the driver {truth.driver!r} is not among the scored features {list(importance.index)}"
        )
    share = importance.clip(lower=0) / max(float(importance.clip(lower=0).sum()), 1e-12)
    scored = share[share.index.isin(importance.index)]
    order = scored.sort_values(ascending=False, kind="stable")
    uniform = 1.0 / len(scored)
    ratio = float(share[truth.driver]) / uniform
    return {
        "driver": truth.driver,
        "driver_share": float(share[truth.driver]),
        "uniform_share": uniform,
        "ratio_to_uniform": ratio,
        "driver_rank": int(np.flatnonzero(order.index == truth.driver)[0]) + 1,
        "top_feature": str(order.index[0]),
    }


@contextmanager
def uniform_temporal_attention(model: Forecaster) -> Iterator[None]:
    """Inside this block the model's temporal attention weights are uniform over the
    positions it may attend (masked positions stay 0).

    Args:
        model: a fitted torch forecaster whose network has temporal attention modules
            (they carry `is_temporal_attention = True`).
    """
    network = getattr(model, "network", None)
    mods = (
        [m for m in network.modules() if getattr(m, "is_temporal_attention", False)]
        if (isinstance(network, nn.Module))
        else []
    )
    if not mods:
        raise ValueError(f"{getattr(model, 'name', model)} has no temporal attention to ablate")
    for m in mods:
        m.uniform = True
    try:
        yield
    finally:
        for m in mods:
            m.uniform = False


def attention_ablation(
    model: Forecaster, ds: WindowDataset, *, max_windows: int | None = None, seed: int = 0
) -> dict:
    """MSE (scaled) with the model's attention and with uniform attention instead.

    Args:
        model: a fitted torch forecaster with temporal attention.
        ds: the windows to score.
        max_windows: score a seeded random subset of this many windows (None: all).
        seed: seed of that subset.
    """
    batch = eval_batch(ds, max_windows, seed)
    base = mse(model, batch)
    with uniform_temporal_attention(model):
        flat = mse(model, batch)
    return {
        "mse": base,
        "mse_uniform_attention": flat,
        "increase": flat / base - 1.0 if base > 0 else float("nan"),
    }


def untrained_copy(model: Forecaster) -> Forecaster:
    """The same model and config with freshly initialised (seeded) weights.

    Args:
        model: a fitted torch forecaster.
    """
    if not isinstance(getattr(model, "network", None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no torch network to re-initialise")
    clone = copy.copy(model)
    torch.manual_seed(model.config.train.seed)
    clone.network = model.make_network().to(model.device)
    return clone
