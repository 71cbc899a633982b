"""Evaluate any `Forecaster` over every window of a part, in scaled and original units."""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    prediction: np.ndarray
    target: np.ndarray
    series_index: np.ndarray
    origin: np.ndarray
    temporal_attention: np.ndarray | None = None
    feature_attention: np.ndarray | None = None


def predict_dataset(
    model: Forecaster, ds: WindowDataset, *, batch_size: int = 1024, keep_attention: bool = False
) -> Predictions:
    """Predict every window of `ds` (stride as built, no dropped last batch).

    Args:
        model: a fitted forecaster.
        ds: the windows.
        batch_size: windows per forward pass.
        keep_attention: also collect attention weights (memory N x H x L).
    """
    preds, targets, temporal, feature = [], [], [], []
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size):
            out = model.predict_batch(batch)
            preds.append(out.prediction.detach().float().cpu().numpy())
            targets.append(batch["future_target"].numpy())
            if keep_attention and out.temporal_attention is not None:
                temporal.append(out.temporal_attention.detach().float().cpu().numpy())
            if keep_attention and out.feature_attention is not None:
                feature.append(out.feature_attention.detach().float().cpu().numpy())
    return Predictions(
        prediction=np.concatenate(preds),
        target=np.concatenate(targets),
        series_index=ds.series_index.copy(),
        origin=ds.starts + ds.layout.input_length - 1,
        temporal_attention=np.concatenate(temporal) if temporal else None,
        feature_attention=np.concatenate(feature) if feature else None,
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


def predictions_frame(preds: Predictions, data: DataBundle, ds: WindowDataset) -> pd.DataFrame:
    """Tidy predictions with real timestamps, in original units.

    Columns: series, origin_time, step, time, target, actual, prediction.
    """
    n, h, nt = preds.prediction.shape
    times = data.target_timestamps(ds)  # [N, H]
    origin_times = data.frame.timestamps[preds.origin]
    actual = data.to_original(preds.target, ds)
    pred = data.to_original(preds.prediction, ds)
    ids = np.asarray(data.frame.series_ids, dtype=object)[preds.series_index]
    frames = []
    for c, name in enumerate(data.layout.targets):
        frames.append(
            pd.DataFrame(
                {
                    "series": np.repeat(ids, h),
                    "origin_time": np.repeat(origin_times, h),
                    "step": np.tile(np.arange(1, h + 1), n),
                    "time": times.reshape(-1),
                    "target": name,
                    "actual": actual[:, :, c].reshape(-1),
                    "prediction": pred[:, :, c].reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
