"""Point-forecast metrics on arrays shaped [N, H, C] (windows x horizon steps x targets).

Every metric checks that ``y_true`` and ``y_pred`` have the same 3-D shape and contain
only finite values, then averages over all N * H * C points. ``per_horizon`` evaluates a
metric at each step of the horizon separately.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

logger = logging.getLogger(__name__)


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); expected only finite values")


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float arrays of one non-empty, finite [N, H, C] shape."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.shape != p.shape:
        raise ValueError(
            f"y_true has shape {t.shape} but y_pred has shape {p.shape}; expected equal shapes"
        )
    if t.ndim != 3:
        raise ValueError(f"y_true and y_pred must have shape [N, H, C] (3 dims), got {t.shape}")
    if t.size == 0:
        raise ValueError(f"y_true and y_pred are empty (shape {t.shape}); expected values")
    _check_finite("y_true", t)
    _check_finite("y_pred", p)
    return t, p


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.

    >>> mae([[[1.0], [2.0]]], [[[2.0], [4.0]]])
    1.5
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def mse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean squared error.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.

    >>> mse([[[1.0], [2.0]]], [[[2.0], [4.0]]])
    2.5
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error, ``sqrt(mse)``.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
    """
    return float(np.sqrt(mse(y_true, y_pred)))


def mape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, eps: float = 1e-8) -> float:
    """Mean absolute percentage error as a fraction (0.1 means 10%), safe near zero.

    Points where ``|y_true| <= eps`` are excluded: their percentage error is undefined.
    If every point is excluded, a warning is logged and nan is returned.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
        eps: Points with ``|y_true|`` at or below this are left out.

    >>> mape([[[0.0], [2.0], [4.0]]], [[[5.0], [1.0], [5.0]]])
    0.375
    """
    t, p = _pair(y_true, y_pred)
    keep = np.abs(t) > eps
    if not keep.any():
        logger.warning("mape: all %d points have |y_true| <= eps=%g; returning nan", t.size, eps)
        return float("nan")
    return float(np.mean(np.abs(t[keep] - p[keep]) / np.abs(t[keep])))


def smape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Symmetric MAPE: mean of ``2|e| / (|y| + |yhat|)``, with 0/0 counted as 0; in [0, 2].

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.

    >>> smape([[[1.0], [0.0], [1.0]]], [[[3.0], [0.0], [-1.0]]])
    1.0
    """
    t, p = _pair(y_true, y_pred)
    denom = np.abs(t) + np.abs(p)
    num = 2.0 * np.abs(t - p)
    ratio = np.divide(num, denom, out=np.zeros_like(num), where=denom > 0)
    return float(np.mean(ratio))


def seasonal_naive_scale(train: npt.ArrayLike, period: int) -> np.ndarray:
    """MASE scale per column: mean of ``|y[t] - y[t - period]|`` over the training rows.

    Args:
        train: Training values, [T, C] (a 1-D [T] array is one column).
        period: Seasonal period in rows (1 for the plain naive forecast).

    Returns:
        Array of shape [C].

    >>> seasonal_naive_scale([[0.0], [1.0], [3.0]], period=1)
    array([1.5])
    """
    y = np.asarray(train, dtype=float)
    y = y[:, None] if y.ndim == 1 else y  # [T] -> [T, 1]
    if y.ndim != 2:
        raise ValueError(f"train must have shape [T, C], got {y.shape}")
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if y.shape[0] <= period:
        raise ValueError(f"train has T={y.shape[0]} rows but period={period}; need T > period")
    _check_finite("train", y)
    scale = np.mean(np.abs(y[period:] - y[:-period]), axis=0)  # [C]
    constant = np.flatnonzero(scale == 0).tolist()
    if constant:
        raise ValueError(
            f"train column(s) {constant} are constant at period={period} (scale 0); "
            "MASE needs a training series that varies at that period"
        )
    return scale


def mase(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, scale: npt.ArrayLike) -> float:
    """Mean absolute scaled error: absolute errors divided by ``scale``, averaged.

    With a scalar scale this is ``mae / scale``; with a per-column scale it is the mean of
    the per-column ratios ``mae_c / scale_c``.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
        scale: Scalar, [C] (from ``seasonal_naive_scale``), or per-window [N, 1, C].

    >>> mase([[[1.0, 10.0]]], [[[2.0, 14.0]]], scale=[1.0, 2.0])
    1.5
    """
    t, p = _pair(y_true, y_pred)
    n, _, c = t.shape
    s = np.asarray(scale, dtype=float)
    try:
        s = np.broadcast_to(s, (n, 1, c))  # [N, 1, C]: one scale per window and column
    except ValueError as err:
        raise ValueError(
            f"scale has shape {s.shape}, which does not broadcast to [N, 1, C] = {(n, 1, c)}; "
            "expected a scalar, [C] or [N, 1, C]"
        ) from err
    _check_finite("scale", s)
    if (s < 0).any():
        raise ValueError(f"scale has {int((s < 0).sum())} negative value(s); expected scales > 0")
    if (s == 0).any():
        bad = sorted(set(np.nonzero(s == 0)[2].tolist()))
        raise ValueError(
            f"scale is 0 for column(s) {bad}: the training series is constant at that "
            "period, so MASE is undefined; expected scales > 0"
        )
    return float(np.mean(np.abs(t - p) / s))


METRICS: dict[str, Callable[..., float]] = {
    "mae": mae,
    "mse": mse,
    "rmse": rmse,
    "mape": mape,
    "smape": smape,
    "mase": mase,
}


def _resolve_names(names: Sequence[str] | None, mase_scale: npt.ArrayLike | None) -> list[str]:
    if names is None:
        return [n for n in METRICS if n != "mase" or mase_scale is not None]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known metrics: {sorted(METRICS)}")
    if "mase" in names and mase_scale is None:
        raise ValueError("metric 'mase' needs a scale (mase_scale, or scale in per_horizon)")
    return list(names)


def per_horizon(
    metric_name: str, y_true: npt.ArrayLike, y_pred: npt.ArrayLike, **kw: object
) -> np.ndarray:
    """A metric computed separately at each horizon step.

    Args:
        metric_name: Key of ``METRICS``.
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
        **kw: Passed to the metric (e.g. ``scale`` for mase).

    Returns:
        Array of shape [H].

    >>> per_horizon("mae", [[[1.0], [2.0]]], [[[2.0], [4.0]]])
    array([1., 2.])
    """
    (name,) = _resolve_names([metric_name], kw.get("scale"))
    t, p = _pair(y_true, y_pred)
    fn = METRICS[name]
    return np.array([fn(t[:, h : h + 1], p[:, h : h + 1], **kw) for h in range(t.shape[1])])


def compute_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    mase_scale: npt.ArrayLike | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Several metrics at once; MASE is included only when ``mase_scale`` is given.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
        mase_scale: Scale for MASE (scalar, [C] or [N, 1, C]).
        names: Metrics to compute; default all of ``METRICS`` that apply.

    >>> compute_metrics([[[1.0], [2.0]]], [[[2.0], [4.0]]], names=["mae", "mse"])
    {'mae': 1.5, 'mse': 2.5}
    """
    out = {}
    for name in _resolve_names(names, mase_scale):
        kw = {"scale": mase_scale} if name == "mase" else {}
        out[name] = METRICS[name](y_true, y_pred, **kw)
    return out


def per_horizon_table(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, mase_scale: npt.ArrayLike | None = None
) -> pd.DataFrame:
    """Every applicable metric at each horizon step: columns ``step`` (1..H), then metrics.

    Args:
        y_true: Observed values, [N, H, C].
        y_pred: Forecasts, same shape.
        mase_scale: Scale for MASE; without it the table has no ``mase`` column.
    """
    t, p = _pair(y_true, y_pred)
    table = {"step": np.arange(1, t.shape[1] + 1)}
    for name in _resolve_names(None, mase_scale):
        kw = {"scale": mase_scale} if name == "mase" else {}
        table[name] = per_horizon(name, t, p, **kw)
    return pd.DataFrame(table)


# ------------------------------------------------------------ probabilistic forecasts
# Quantile forecasts are [N, H, C, Q] (one value per quantile level, levels ascending);
# intervals are a lower and an upper bound, each [N, H, C].


def _quantile_pair(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed values [N, H, C], quantile forecasts [N, H, C, Q] and levels [Q], checked."""
    q = np.asarray(q_pred, dtype=float)
    lv = np.asarray(levels, dtype=float)
    if q.ndim != 4 or q.shape[-1] != len(lv):
        raise ValueError(
            f"quantile forecasts must have shape [N, H, C, Q] with Q = {len(lv)} levels, "
            f"got {q.shape}"
        )
    if not ((lv > 0) & (lv < 1)).all():
        raise ValueError(f"quantile levels must lie in (0, 1), got {lv.tolist()}")
    t, _ = _pair(y_true, q[..., 0])
    _check_finite("q_pred", q)
    return t, q, lv


def pinball_loss(y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]) -> float:
    """Pinball (quantile) loss averaged over points and levels:
    ``max(tau * (y - q), (tau - 1) * (y - q))``. At ``tau = 0.5`` it is half the MAE.

    Args:
        y_true: Observed values, [N, H, C].
        q_pred: Quantile forecasts, [N, H, C, Q].
        levels: The Q quantile levels, in (0, 1).

    >>> pinball_loss([[[1.0]]], [[[[0.0, 2.0]]]], levels=[0.5, 0.9])
    0.3
    """
    t, q, lv = _quantile_pair(y_true, q_pred, levels)
    diff = t[..., None] - q  # [N, H, C, Q]
    return float(np.mean(np.maximum(lv * diff, (lv - 1.0) * diff)))


def weighted_quantile_loss(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]
) -> float:
    """Weighted quantile loss (GluonTS ``mean_wQuantileLoss``): per level
    ``2 * sum(pinball) / sum(|y|)``, averaged over levels. Scale-free for positive data;
    on z-scored data the denominator can be small, so read it with care.

    Args:
        y_true: Observed values, [N, H, C].
        q_pred: Quantile forecasts, [N, H, C, Q].
        levels: The Q quantile levels.

    >>> weighted_quantile_loss([[[2.0]]], [[[[1.0]]]], levels=[0.5])
    0.5
    """
    t, q, lv = _quantile_pair(y_true, q_pred, levels)
    diff = t[..., None] - q
    loss = np.maximum(lv * diff, (lv - 1.0) * diff)  # [N, H, C, Q]
    denom = float(np.abs(t).sum())
    if denom == 0:
        return float("nan")
    return float(np.mean(2.0 * loss.reshape(-1, len(lv)).sum(axis=0) / denom))


def crps_from_quantiles(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]
) -> float:
    """CRPS approximated from a set of quantiles: ``2 * mean over levels of the pinball
    loss`` (the CRPS is twice the pinball loss integrated over levels in (0, 1)); the
    more levels, evenly spread, the closer to the true CRPS. Equals the MAE for the
    single level 0.5.

    Args:
        y_true: Observed values, [N, H, C].
        q_pred: Quantile forecasts, [N, H, C, Q].
        levels: The Q quantile levels.

    >>> crps_from_quantiles([[[1.0]]], [[[[0.0]]]], levels=[0.5])
    1.0
    """
    return 2.0 * pinball_loss(y_true, q_pred, levels)


def coverage(y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Fraction of observed values inside ``[lower, upper]`` (bounds included).

    Args:
        y_true: Observed values, [N, H, C].
        lower: Lower bounds, same shape.
        upper: Upper bounds, same shape.

    >>> coverage([[[1.0], [3.0]]], [[[0.0], [0.0]]], [[[2.0], [2.0]]])
    0.5
    """
    t, lo = _pair(y_true, lower)
    _, hi = _pair(y_true, upper)
    return float(np.mean((t >= lo) & (t <= hi)))


def interval_width(lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Mean width ``upper - lower`` of a set of intervals.

    Args:
        lower: Lower bounds, [N, H, C].
        upper: Upper bounds, same shape.

    >>> interval_width([[[0.0], [1.0]]], [[[2.0], [2.0]]])
    1.5
    """
    lo, hi = _pair(lower, upper)
    return float(np.mean(hi - lo))


def central_levels(quantile_levels: Sequence[float]) -> dict[float, tuple[int, int]]:
    """Coverage level -> (lower, upper) positions of the symmetric quantile pairs in
    ``quantile_levels`` (0.1 and 0.9 make the 0.8 interval).

    Args:
        quantile_levels: ascending quantile levels.

    >>> central_levels([0.1, 0.5, 0.9])
    {0.8: (0, 2)}
    """
    lv = [float(x) for x in quantile_levels]
    out = {}
    for i, lo in enumerate(lv):
        for j in range(len(lv) - 1, i, -1):
            if abs(lo + lv[j] - 1.0) < 1e-9 and lo < 0.5:
                out[round(lv[j] - lo, 6)] = (i, j)
    return dict(sorted(out.items()))


def level_name(level: float) -> str:
    """Column suffix of a coverage level: 0.8 -> '80', 0.95 -> '95', 0.975 -> '97.5'.

    >>> level_name(0.8)
    '80'
    """
    return f"{100 * level:.6g}"


def probabilistic_metrics(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]
) -> dict[str, float]:
    """Coverage and mean width of every central interval the quantiles hold
    (``coverage_80``, ``width_80``, ...), pinball loss, weighted quantile loss and CRPS.

    Args:
        y_true: Observed values, [N, H, C].
        q_pred: Quantile forecasts, [N, H, C, Q].
        levels: The Q quantile levels, ascending.
    """
    t, q, lv = _quantile_pair(y_true, q_pred, levels)
    out = {}
    for level, (i, j) in central_levels(lv).items():
        out[f"coverage_{level_name(level)}"] = coverage(t, q[..., i], q[..., j])
        out[f"width_{level_name(level)}"] = interval_width(q[..., i], q[..., j])
    out["pinball"] = pinball_loss(t, q, lv)
    out["wql"] = weighted_quantile_loss(t, q, lv)
    out["crps"] = crps_from_quantiles(t, q, lv)
    return out


def probabilistic_per_horizon(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, levels: Sequence[float]
) -> pd.DataFrame:
    """`probabilistic_metrics` at each horizon step: columns ``step`` (1..H), then metrics.

    Args:
        y_true: Observed values, [N, H, C].
        q_pred: Quantile forecasts, [N, H, C, Q].
        levels: The Q quantile levels, ascending.
    """
    t, q, lv = _quantile_pair(y_true, q_pred, levels)
    rows = [probabilistic_metrics(t[:, h : h + 1], q[:, h : h + 1], lv) for h in range(t.shape[1])]
    return pd.DataFrame(rows).assign(step=np.arange(1, t.shape[1] + 1))[["step", *rows[0].keys()]]
