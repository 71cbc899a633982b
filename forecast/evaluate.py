"""Evaluate any `Forecaster` over every window of a part, in scaled and original units."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from forecast import metrics
from forecast.data.prepare import DataBundle
from forecast.data.windows import WindowDataset
from forecast.models.base import Forecaster


@dataclass
class Predictions:
    """Forecasts for every window of a dataset, in the scaled space.

    Args:
        prediction: [N, H, targets].
        target: [N, H, targets] the actual values.
        series_index: [N] series of each window.
        origin: [N] global row of each window's last input step.
        temporal_attention: [N, H, L] when kept and the model returns it.
        feature_attention: [N, L, F] when kept and the model returns it.
        quantiles: [N, H, targets, Q] when the model has a quantile head.
        quantile_levels: the Q levels of `quantiles`, ascending.
    """

    prediction: np.ndarray
    target: np.ndarray
    series_index: np.ndarray
    origin: np.ndarray
    temporal_attention: np.ndarray | None = None
    feature_attention: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    quantile_levels: tuple[float, ...] | None = None


def predict_dataset(
    model: Forecaster, ds: WindowDataset, *, batch_size: int = 1024, keep_attention: bool = False
) -> Predictions:
    """Predict every window of `ds` (stride as built, no dropped last batch).

    Args:
        model: a fitted forecaster.
        ds: the windows.
        batch_size: windows per forward pass, at most the model's `max_batch` (its
            activations within `forecast.models.base.EVAL_MEMORY_BYTES`).
        keep_attention: also collect attention weights (memory N x H x L); without it,
            models that can (the transformer) compute no maps at all.
    """
    limit = model.max_batch(keep_attention)
    batch_size = batch_size if limit is None else min(batch_size, limit)
    preds, targets, temporal, feature, quantiles = [], [], [], [], []
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size):
            out = model.predict_batch(batch, attention=keep_attention)
            preds.append(out.prediction.detach().float().cpu().numpy())
            targets.append(batch["future_target"].numpy())
            if out.quantiles is not None:
                quantiles.append(out.quantiles.detach().float().cpu().numpy())
            if keep_attention and out.temporal_attention is not None:
                temporal.append(out.temporal_attention.detach().float().cpu().numpy())
            if keep_attention and out.feature_attention is not None:
                feature.append(out.feature_attention.detach().float().cpu().numpy())
    return Predictions(
        prediction=np.concatenate(preds),
        target=np.concatenate(targets),
        series_index=ds.series_index.copy(),
        origin=ds.origin_rows(),
        temporal_attention=np.concatenate(temporal) if temporal else None,
        feature_attention=np.concatenate(feature) if feature else None,
        quantiles=np.concatenate(quantiles) if quantiles else None,
        quantile_levels=model.config.params().get("quantiles") if quantiles else None,
    )


def score(preds: Predictions, data: DataBundle, ds: WindowDataset) -> dict[str, float]:
    """Metrics on the scaled space (`mse`, `mae`, ...) and in original units (`orig_*`).

    MASE is scaled by each series' seasonal-naive error on its training rows.
    """
    scale = data.mase_scale()[preds.series_index][:, None, :]  # [N, 1, targets]
    result = metrics.compute_metrics(preds.target, preds.prediction, mase_scale=scale)
    y_true = data.to_original(preds.target, ds)
    y_pred = data.to_original(preds.prediction, ds)
    orig = metrics.compute_metrics(y_true, y_pred, names=["mae", "mse", "rmse", "mape", "smape"])
    result.update({f"orig_{k}": v for k, v in orig.items()})
    return result


def _subset(preds: Predictions, ds: WindowDataset, windows: np.ndarray | None):
    """`preds` and `ds` restricted to some windows (all when None)."""
    if windows is None:
        return preds, ds
    w = np.asarray(windows)
    return (
        Predictions(preds.prediction[w], preds.target[w], preds.series_index[w], preds.origin[w]),
        ds.subset(w),
    )


def predictions_frame(
    preds: Predictions,
    data: DataBundle,
    ds: WindowDataset,
    *,
    windows: np.ndarray | None = None,
    targets: list[str] | None = None,
) -> pd.DataFrame:
    """Tidy predictions with real timestamps, in original units.

    Columns: series, origin_time, step, time, target, actual, prediction.

    Args:
        preds: predictions of every window of `ds`.
        data: the prepared data (timestamps, scaler).
        ds: the windows.
        windows: only these windows (indices into `ds`); all by default.
        targets: only these target columns; all by default.
    """
    preds, ds = _subset(preds, ds, windows)
    return _tidy(
        np.asarray(data.frame.series_ids, dtype=object)[preds.series_index],
        data.frame.timestamps[preds.origin],
        data.target_timestamps(ds),
        list(data.layout.targets),
        data.to_original(preds.target, ds),
        data.to_original(preds.prediction, ds),
        targets,
    )


def _tidy(
    series: np.ndarray,
    origin_time: np.ndarray,
    time: np.ndarray,
    names: list[str],
    actual: np.ndarray,
    prediction: np.ndarray,
    keep: list[str] | None = None,
) -> pd.DataFrame:
    """Long frame from per-window arrays: series/origin_time [N], time [N, H], values
    [N, H, targets] in original units; one block of rows per target (those in `keep`)."""
    n, h, _ = prediction.shape
    frames = [
        pd.DataFrame(
            {
                "series": np.repeat(series, h),
                "origin_time": np.repeat(origin_time, h),
                "step": np.tile(np.arange(1, h + 1), n),
                "time": time.reshape(-1),
                "target": name,
                "actual": actual[:, :, c].reshape(-1),
                "prediction": prediction[:, :, c].reshape(-1),
            }
        )
        for c, name in enumerate(names)
        if keep is None or name in keep
    ]
    return pd.concat(frames, ignore_index=True)


def prediction_arrays(preds: Predictions, data: DataBundle, ds: WindowDataset) -> dict:
    """The arrays of a results `.npz`: predictions and everything needed to read them.

    `prediction` and `actual` are float32 [N, H, targets] in the scaled space (exactly what
    the metrics were computed on); original units are `value * std[series_index] +
    mean[series_index]`, which `load_predictions` applies. Overlapping windows make
    `actual` and `time` compress to a small fraction of their raw size.

    Args:
        preds: predictions of every window of `ds`.
        data: the prepared data.
        ds: the windows.
    """
    n_series, nt = data.frame.n_series, data.layout.n_targets
    every = np.arange(n_series)
    mean = data.scaler.inverse(np.zeros((n_series, 1, nt)), every, slice(0, nt))[:, 0]
    std = data.scaler.inverse(np.ones((n_series, 1, nt)), every, slice(0, nt))[:, 0] - mean
    return {
        "prediction": preds.prediction.astype(np.float32, copy=False),  # [N, H, T]
        "actual": preds.target.astype(np.float32, copy=False),  # [N, H, T]
        "series_index": np.asarray(preds.series_index, dtype=np.int32),  # [N]
        "origin_time": data.frame.timestamps[preds.origin],  # [N] datetime64[ns]
        "time": data.target_timestamps(ds),  # [N, H] datetime64[ns]
        "series_ids": np.asarray(data.frame.series_ids, dtype=str),  # [S]
        "targets": np.asarray(data.layout.targets, dtype=str),  # [T]
        "mean": mean,  # [S, T] original units
        "std": std,  # [S, T]
    }


def load_predictions(path: str | Path, *, windows: np.ndarray | None = None) -> pd.DataFrame:
    """A results `.npz` (`results/<model>/seed<k>.npz`) as a tidy frame in original units.

    Same columns as `predictions_frame`: series, origin_time, step, time, target, actual,
    prediction.

    Args:
        path: the `.npz` file written by a run.
        windows: only these windows (indices); all by default.
    """
    with np.load(path) as z:
        if "origin_time" not in z:
            raise ValueError(
                f"{path} holds predictions only (a run folder from an older version): "
                "no timestamps or scaler to read them with"
            )
        a = {k: z[k] for k in z.files}
    w = slice(None) if windows is None else np.asarray(windows)
    si = a["series_index"][w]
    scale, shift = a["std"][si][:, None, :], a["mean"][si][:, None, :]  # [N, 1, T]
    return _tidy(
        a["series_ids"][si].astype(object),
        a["origin_time"][w],
        a["time"][w],
        [str(t) for t in a["targets"]],
        a["actual"][w].astype(np.float64) * scale + shift,
        a["prediction"][w].astype(np.float64) * scale + shift,
    )
