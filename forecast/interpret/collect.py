"""Collect a model's attention over a dataset into arrays and tidy DataFrames.

`collect_attention` streams over the windows: it keeps running sums for the means
(float64), the step-averaged temporal attention of every window ([N, L], for the
"attention over the test period" view), and the full maps only for a seeded subsample of
`median_windows` windows, from which the medians are taken. Memory is therefore
N x L + median_windows x H x L, never N x H x L. The medians are over that subsample
(`AttentionSummary.median_windows` says how many windows it holds).

Positions are encoder steps j = 0 .. L-1; lag = L - 1 - j (the origin has lag 0), also
given in time units of the data's frequency (`lag_time`, `lag_unit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from forecast.data.prepare import DataBundle
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.interpret._common import encoder_grid, lag_axis, progress_bar
from forecast.models.attention.maps import reduce_attention
from forecast.models.base import Forecaster


@dataclass
class AttentionSummary:
    """Attention of one model over a dataset, aggregated.

    Args:
        layout: the windows' layout (feature names, lengths, frequency).
        n_windows: windows seen.
        temporal_mean: [H, L] mean temporal attention, None if the model has none.
        temporal_median: [H, L] median over the subsample.
        feature_mean: [L, F] mean feature attention, None if the model has none.
        feature_median: [L, F] median over the subsample.
        by_origin: [N, L] temporal attention of each window averaged over forecast steps.
        origins: [N] global row of each window's origin (last input step).
        median_windows: size of the subsample behind the medians.
        heads: transformer maps averaged over windows: 'decoder_cross_attention' and
            'encoder_self_attention', each a list (per layer) of [heads, Q, K] arrays.
        rollout_mean: [H, L] mean attention rollout (transformers only).
        temporal_sample: [median_windows, H, L] the temporal maps of the subsample, in
            window order (for intervals over windows).
    """

    layout: WindowLayout
    n_windows: int
    temporal_mean: np.ndarray | None
    temporal_median: np.ndarray | None
    feature_mean: np.ndarray | None
    feature_median: np.ndarray | None
    by_origin: np.ndarray | None
    origins: np.ndarray
    median_windows: int
    heads: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rollout_mean: np.ndarray | None = None
    temporal_sample: np.ndarray | None = None

    @property
    def has_temporal(self) -> bool:
        return self.temporal_mean is not None

    @property
    def has_feature(self) -> bool:
        return self.feature_mean is not None

    def temporal_frame(self) -> pd.DataFrame:
        """Tidy mean and median temporal attention: step, position, lag, lag_time, ..."""
        if self.temporal_mean is None:
            raise ValueError("this model returned no temporal attention; nothing to tabulate")
        frame = temporal_frame(self.temporal_mean, self.layout, value="mean")
        frame["median"] = temporal_frame(self.temporal_median, self.layout)["weight"].to_numpy()
        return frame

    def feature_frame(self) -> pd.DataFrame:
        """Tidy mean and median feature attention: position, lag, ..., feature, mean, median."""
        if self.feature_mean is None:
            raise ValueError("this model returned no feature attention; nothing to tabulate")
        frame = feature_frame(self.feature_mean, self.layout, value="mean")
        frame["median"] = feature_frame(self.feature_median, self.layout)["weight"].to_numpy()
        return frame

    def feature_importance(self) -> pd.Series:
        """Each feature's share of the feature attention (summed over input steps, mean
        over windows, normalised to sum to 1). For per-step weights (rows summing to 1,
        DA-RNN's input attention) this is their mean; for a joint map over (step,
        feature) (the read decoder) it is the feature's share of everything read."""
        if self.feature_mean is None:
            raise ValueError("this model returned no feature attention")
        names = list(self.layout.encoder_features)
        per = self.feature_mean.sum(axis=0)
        return pd.Series(per / max(float(per.sum()), 1e-12), index=names, name="feature_attention")

    def lag_importance(self) -> pd.Series:
        """Mean temporal attention per lag (averaged over forecast steps and windows)."""
        if self.temporal_mean is None:
            raise ValueError("this model returned no temporal attention")
        lags, _, _ = lag_axis(self.layout)
        return pd.Series(self.temporal_mean.mean(axis=0), index=lags, name="temporal_attention")


def temporal_frame(
    weights: np.ndarray,
    layout: WindowLayout,
    *,
    input_times: np.ndarray | None = None,
    value: str = "weight",
) -> pd.DataFrame:
    """Tidy [H, L] temporal attention: one row per (forecast step, encoder position).

    Args:
        weights: [H, L] attention (decoder step x encoder step).
        layout: the layout (lengths and frequency).
        input_times: [L] timestamps of the encoder steps of one window, added as a column.
        value: name of the weight column.
    """
    H, L = weights.shape
    if L != layout.input_length:
        raise ValueError(
            f"weights have {L} encoder steps; the layout's input_length is {layout.input_length}"
        )
    lags, lag_time, unit = lag_axis(layout)
    frame = pd.DataFrame(
        {
            "step": np.repeat(np.arange(1, H + 1), L),
            "position": np.tile(np.arange(L), H),
            "lag": np.tile(lags, H),
            "lag_time": np.tile(lag_time, H),
            "lag_unit": unit,
        }
    )
    if input_times is not None:
        frame["input_time"] = np.tile(np.asarray(input_times), H)
    frame[value] = np.asarray(weights, dtype=np.float64).reshape(-1)
    return frame


def feature_frame(
    weights: np.ndarray,
    layout: WindowLayout,
    *,
    input_times: np.ndarray | None = None,
    value: str = "weight",
) -> pd.DataFrame:
    """Tidy [L, F] feature attention (or any feature x time map): one row per cell.

    Args:
        weights: [L, F] values per encoder step and encoder feature.
        layout: the layout (feature names, lengths and frequency).
        input_times: [L] timestamps of one window's encoder steps, added as a column.
        value: name of the value column.
    """
    L, F = weights.shape
    names = list(layout.encoder_features)
    if (L, F) != (layout.input_length, len(names)):
        raise ValueError(
            f"weights are [{L}, {F}]; expected [input_length, n_features] = "
            f"[{layout.input_length}, {len(names)}] for features {names}"
        )
    lags, lag_time, unit = lag_axis(layout)
    frame = pd.DataFrame(
        {
            "position": np.repeat(np.arange(L), F),
            "lag": np.repeat(lags, F),
            "lag_time": np.repeat(lag_time, F),
            "lag_unit": unit,
            "feature": np.tile(names, L),
        }
    )
    if input_times is not None:
        frame["input_time"] = np.repeat(np.asarray(input_times), F)
    frame[value] = np.asarray(weights, dtype=np.float64).reshape(-1)
    return frame


class _Stream:
    """Running sum plus the maps of the subsampled windows, for one kind of map."""

    def __init__(self, keep: np.ndarray) -> None:
        self.total: np.ndarray | None = None
        self.keep = keep  # sorted dataset positions whose full maps are kept
        self.kept: list[np.ndarray] = []

    def add(self, maps: np.ndarray, lo: int) -> None:
        s = maps.astype(np.float64).sum(axis=0)
        self.total = s if self.total is None else self.total + s
        pick = self.keep[(self.keep >= lo) & (self.keep < lo + len(maps))] - lo
        if len(pick):
            self.kept.append(maps[pick])

    def mean(self, n: int) -> np.ndarray | None:
        return None if self.total is None else self.total / n

    def median(self) -> np.ndarray | None:
        return np.median(np.concatenate(self.kept), axis=0) if self.kept else None


def _head_means(extras: dict, sums: dict[str, list[np.ndarray]]) -> None:
    for key in ("decoder_cross_attention", "encoder_self_attention"):
        for i, maps in enumerate(extras.get(key, [])):
            s = maps.detach().double().cpu().sum(dim=0).numpy()  # [heads, Q, K]
            layer_sums = sums.setdefault(key, [])
            if i < len(layer_sums):
                layer_sums[i] = layer_sums[i] + s
            else:
                layer_sums.append(s)


def collect_attention(
    model: Forecaster,
    ds: WindowDataset,
    *,
    batch_size: int = 256,
    median_windows: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> AttentionSummary:
    """Run `model` over every window of `ds` and aggregate its attention, streaming.

    Args:
        model: a fitted forecaster (attention may be absent: fields are then None).
        ds: the windows (e.g. `bundle.test`).
        batch_size: windows per forward pass.
        median_windows: size of the seeded random subsample the medians use.
        seed: seed of that subsample.
        progress: show a tqdm bar.
    """
    n = len(ds)
    if n == 0:
        raise ValueError("collect_attention needs at least one window, got an empty dataset")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, min(n, median_windows), replace=False))
    temporal, feature, rollout = _Stream(keep), _Stream(keep), _Stream(keep[:0])
    by_origin: list[np.ndarray] = []
    head_sums: dict[str, list[np.ndarray]] = {}
    bar = progress_bar((n + batch_size - 1) // batch_size, "attention", progress)
    lo = 0
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size):
            out = model.predict_batch(batch)
            if out.temporal_attention is not None:
                t = out.temporal_attention.detach().float().cpu().numpy()  # [B, H, L]
                temporal.add(t, lo)
                by_origin.append(t.mean(axis=1))  # [B, L]
            if out.feature_attention is not None:
                feature.add(out.feature_attention.detach().float().cpu().numpy(), lo)
            if "decoder_cross_attention" in out.extras:
                _head_means(out.extras, head_sums)
                if out.extras.get("encoder_self_attention"):
                    roll = reduce_attention(out.extras, "rollout").float().cpu().numpy()
                    rollout.add(roll, lo)
            lo += len(batch["origin"])
            bar.update(1)
    bar.close()
    return AttentionSummary(
        layout=ds.layout,
        n_windows=n,
        temporal_mean=temporal.mean(n),
        temporal_median=temporal.median(),
        feature_mean=feature.mean(n),
        feature_median=feature.median(),
        by_origin=np.concatenate(by_origin) if by_origin else None,
        origins=ds.origin_rows(),
        median_windows=len(keep),
        heads={k: [s / n for s in v] for k, v in head_sums.items()},
        rollout_mean=rollout.mean(n),
        temporal_sample=np.concatenate(temporal.kept) if temporal.kept else None,
    )


@dataclass
class WindowAttention:
    """Attention of one window with its data, ready to plot.

    Args:
        index: position of the window in its dataset.
        input_times: [L] timestamps of the encoder steps.
        target_times: [H] timestamps of the forecast steps.
        inputs: [L, F] encoder inputs (scaled), columns `layout.encoder_features`.
        prediction: [H, T] forecast in original units.
        actual: [H, T] actual values in original units.
        temporal: [H, L] temporal attention or None.
        feature: [L, F] feature attention or None.
        layout: the layout.
    """

    index: int
    input_times: np.ndarray
    target_times: np.ndarray
    inputs: np.ndarray
    prediction: np.ndarray
    actual: np.ndarray
    temporal: np.ndarray | None
    feature: np.ndarray | None
    layout: WindowLayout


def window_attention(
    model: Forecaster, bundle: DataBundle, index: int, *, part: str = "test"
) -> WindowAttention:
    """The attention, inputs, forecast and actuals of one window of `bundle`'s `part`.

    Args:
        model: a fitted forecaster.
        bundle: the prepared data (timestamps and scaler).
        index: window position in the part (negative counts from the end).
        part: 'train', 'val' or 'test'.
    """
    ds = bundle.part(part)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the {part!r} part has no windows")
    if not -len(ds) <= index < len(ds):
        raise ValueError(f"window index {index} is out of range for {len(ds)} {part} windows")
    index = index % len(ds)
    batch = ds.batch(np.array([index]))
    with torch.no_grad():
        out = model.predict_batch(batch)
    L = ds.layout.input_length
    start = int(ds.starts[index])
    sub = ds.subset(np.array([index]))
    inputs = encoder_grid(batch)  # [1, L, F]

    def first(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else x[0].detach().float().cpu().numpy()

    return WindowAttention(
        index=index,
        input_times=bundle.frame.timestamps[start : start + L],
        target_times=bundle.target_timestamps(sub)[0],
        inputs=inputs[0].numpy(),
        prediction=bundle.to_original(out.prediction.float().numpy(), sub)[0],
        actual=bundle.to_original(batch["future_target"].numpy(), sub)[0],
        temporal=first(out.temporal_attention),
        feature=first(out.feature_attention),
        layout=ds.layout,
    )
