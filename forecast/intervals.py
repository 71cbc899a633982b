"""Calibrated prediction intervals for any model, from its validation windows.

Two calibrations, both in the scaled space, per horizon step and per target:

- `ConformalIntervals` (split conformal, every model, baselines included): the
  validation residuals' quantile, with the finite-sample correction (the
  ``ceil((n + 1) * coverage)``-th smallest of n scores), is the half-width of a symmetric
  interval around the point forecast. ``method='scaled'`` divides each residual by the
  window's own scale (the mean absolute step of its input targets), so intervals widen
  where the recent series moves more (locally adaptive conformal prediction).
- `QuantileCalibration` (conformalised quantile regression, CQR, Romano et al. 2019) for
  models with a quantile head: each central pair of quantiles is widened (or narrowed)
  by the finite-sample quantile of ``max(lower - y, y - upper)`` on the validation
  windows.

Both give the same thing: quantile forecasts [N, H, targets, Q] at ascending `levels`,
which `forecast.metrics.probabilistic_metrics` scores and `quantiles_to_original`
converts to original units. Split conformal guarantees coverage when validation and test
windows are exchangeable; overlapping windows of a drifting series are not, so coverage
is measured on the test windows, not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from forecast.config_checks import COVERAGE_LEVELS  # the runner's default levels
from forecast.data.prepare import DataBundle
from forecast.data.windows import WindowDataset
from forecast.evaluate import Predictions, predict_dataset
from forecast.metrics import central_levels, probabilistic_metrics, probabilistic_per_horizon
from forecast.models.base import Forecaster

METHODS = ("absolute", "scaled")


def conformal_quantile(scores: np.ndarray, coverage: float) -> np.ndarray:
    """The split-conformal quantile of `scores` along axis 0: the
    ``ceil((n + 1) * coverage)``-th smallest of n scores (inf when that exceeds n: too few
    windows for this coverage).

    Args:
        scores: [n, ...] nonconformity scores.
        coverage: the nominal coverage, in (0, 1).

    >>> conformal_quantile(np.arange(1.0, 10.0), 0.8)  # ceil(10 * 0.8) = 8th of 9
    array(8.)
    """
    return np.asarray(conformal_quantiles(scores, [coverage])[0])


def conformal_quantiles(scores: np.ndarray, coverages: Sequence[float]) -> np.ndarray:
    """`conformal_quantile` of `scores` at every level of `coverages`, stacked [K, ...],
    from one partition.

    Args:
        scores: [n, ...] nonconformity scores.
        coverages: the nominal coverages, each in (0, 1).

    >>> conformal_quantiles(np.arange(1.0, 10.0), [0.5, 0.8, 0.95])  # 5th, 8th, 10th of 9
    array([ 5.,  8., inf])
    """
    for c in coverages:
        _check_coverage(c)
    n = len(scores)
    ks = [math.ceil((n + 1) * c) for c in coverages]
    inside = sorted({k - 1 for k in ks if 0 < k <= n})
    part = np.partition(scores, inside, axis=0) if inside else scores
    inf = np.full(np.shape(scores)[1:], np.inf)
    return np.stack([np.asarray(part[k - 1]) if 0 < k <= n else inf for k in ks])


def _check_coverage(coverage: float) -> None:
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage levels must lie in (0, 1), got {coverage}")


def quantile_levels(coverages: Sequence[float]) -> tuple[float, ...]:
    """Ascending quantile levels of central intervals at `coverages`, and the median.

    >>> quantile_levels([0.8])
    (0.1, 0.5, 0.9)
    """
    for c in coverages:
        _check_coverage(c)
    half = {round((1.0 - c) / 2.0, 6) for c in coverages}
    return tuple(sorted(half | {0.5} | {round(1.0 - h, 6) for h in half}))


def window_scale(ds: WindowDataset, floor: float = 1e-3) -> np.ndarray:
    """[N, 1, targets] mean absolute step of each window's input targets (scaled units),
    at least `floor`: the local volatility that `method='scaled'` divides residuals by.

    Args:
        ds: the windows.
        floor: smallest scale (a flat input window would give 0).
    """
    out = []
    for batch in ds.iter_batches(4096):
        past = batch["past_target"].double().numpy()  # [B, L, targets]
        out.append(np.abs(np.diff(past, axis=1)).mean(axis=1, keepdims=True))
    return np.maximum(np.concatenate(out), floor)


@dataclass(frozen=True)
class _Calibration:
    """Nonconformity scores of the validation windows, and how to turn them into a
    radius per window: static (their finite-sample quantile) or rolling.

    With `window` set (rolling calibration), the windows are scored in time order and
    each block of `refresh` windows is calibrated on the last `window` windows of its
    series whose targets were all observed by the block's first origin: the validation
    windows, then the evaluated windows themselves as their actuals arrive. Nothing after
    a forecast origin is used; it follows a drifting error level that a calibration on
    the validation windows alone misses. Where a series has too few known windows for a
    level, the static radius pooled over every series' validation windows stands in.

    Args:
        coverages: the K calibrated coverage levels.
        scores: [n, K, H, targets] validation scores, one set per level.
        series: [n] series of each validation window.
        origin: [n] global row of each validation window's origin.
        window: calibration windows per series for rolling calibration; None: the
            validation windows only (static).
        refresh: rolling calibration: windows per recalibration (the horizon when None).
    """

    coverages: tuple[float, ...]
    scores: np.ndarray
    series: np.ndarray
    origin: np.ndarray
    window: int | None = None
    refresh: int | None = None
    shared_scores: ClassVar[bool] = False  # True: the same scores at every level

    @property
    def radius(self) -> np.ndarray:
        """[K, H, targets] static radius per level, from the validation windows."""
        return np.stack(
            [conformal_quantile(self.scores[:, k], c) for k, c in enumerate(self.coverages)]
        )

    def _radii(self, new: np.ndarray, preds: Predictions) -> np.ndarray:
        """[K, N, H, targets] radius of every window of `preds` (scores `new`)."""
        if self.window is None:
            return np.broadcast_to(
                self.radius[:, None], (len(self.coverages), *new.shape[:1], *new.shape[2:])
            )
        out = np.empty((len(self.coverages), len(new), *new.shape[2:]))
        pooled = self.radius  # [K, H, T]: where a series has too few known windows
        h = new.shape[2]
        step = self.refresh or h
        for s in np.unique(preds.series_index):
            mine = np.flatnonzero(preds.series_index == s)
            mine = mine[np.argsort(preds.origin[mine], kind="stable")]
            old = self.series == s
            pool = np.concatenate([self.scores[old], new[mine]])  # in time order
            known = np.concatenate([self.origin[old], preds.origin[mine]]) + h  # last target
            for b in range(0, len(mine), step):
                block = mine[b : b + step]
                end = int(np.searchsorted(known, preds.origin[block[0]], side="right"))
                recent = pool[max(0, end - self.window) : end]
                if self.shared_scores:  # one partition serves every level
                    r = conformal_quantiles(recent[:, 0], self.coverages)
                else:
                    r = np.stack(
                        [conformal_quantile(recent[:, k], c) for k, c in enumerate(self.coverages)]
                    )
                out[:, block] = np.where(np.isfinite(r), r, pooled)[:, None]
        return out


def _rolling_window(preds: Predictions, rolling: bool) -> int | None:
    """Rolling calibration: as many windows per series as the validation part has."""
    series = np.asarray(preds.series_index)
    return int(np.bincount(series).max()) if rolling and len(series) else None


@dataclass(frozen=True)
class ConformalIntervals(_Calibration):
    """Split-conformal intervals around a point forecast (see `_Calibration` for
    `window`).

    Args:
        method: 'absolute' (scores |residual|) or 'scaled' (|residual| / window scale).
    """

    method: str = "scaled"
    shared_scores: ClassVar[bool] = True  # `_scores` repeats one |residual| per level

    @property
    def levels(self) -> tuple[float, ...]:
        """Quantile levels of `quantiles`' last axis."""
        return quantile_levels(self.coverages)

    @classmethod
    def calibrate(
        cls,
        preds: Predictions,
        ds: WindowDataset,
        *,
        coverages: Sequence[float] = (0.8,),
        method: str = "scaled",
        rolling: bool = True,
    ) -> ConformalIntervals:
        """Calibrate on validation predictions.

        Args:
            preds: predictions of every window of `ds` (the validation windows).
            ds: those windows.
            coverages: the coverage levels wanted.
            method: 'absolute' (|residual|) or 'scaled' (|residual| / window scale).
            rolling: recalibrate as actuals arrive, over as many windows per series as
                the validation part has; False: the validation windows only.
        """
        if method not in METHODS:
            raise ValueError(f"unknown interval method {method!r}; expected one of {METHODS}")
        coverages = tuple(float(c) for c in coverages)
        for c in coverages:
            _check_coverage(c)
        scores = _scores(preds, ds, method, len(coverages))
        window = _rolling_window(preds, rolling)
        series, origin = np.asarray(preds.series_index), np.asarray(preds.origin)
        return cls(coverages, scores, series, origin, window, method=method)

    def radii(self, preds: Predictions, ds: WindowDataset) -> np.ndarray:
        """[K, N, H, targets] half-width of every window's interval at each level.

        Args:
            preds: predictions of every window of `ds` (with actuals for rolling
                calibration).
            ds: the windows.
        """
        r = self._radii(_scores(preds, ds, self.method, len(self.coverages)), preds)
        return r * window_scale(ds)[None] if self.method == "scaled" else r

    def interval(
        self, preds: Predictions, ds: WindowDataset, coverage: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds [N, H, targets] (scaled space) at one calibrated level.

        Args:
            preds: point predictions of every window of `ds`.
            ds: the windows.
            coverage: one of `coverages`.
        """
        r = self.radii(preds, ds)[_position(self.coverages, coverage)]
        return preds.prediction - r, preds.prediction + r

    def quantiles(self, preds: Predictions, ds: WindowDataset) -> np.ndarray:
        """[N, H, targets, Q] quantile forecasts at `levels`: the point forecast as the
        median, each interval's bounds as its quantiles.

        Args:
            preds: point predictions of every window of `ds`.
            ds: the windows.
        """
        point = preds.prediction.astype(np.float64)
        by_level = {0.5: point}
        for c, r in zip(self.coverages, self.radii(preds, ds)):
            by_level[round((1 - c) / 2, 6)], by_level[round((1 + c) / 2, 6)] = point - r, point + r
        return np.stack([by_level[q] for q in self.levels], axis=-1)


def _scores(preds: Predictions, ds: WindowDataset, method: str, k: int) -> np.ndarray:
    """[N, K, H, targets] nonconformity scores: |residual| (over the window scale)."""
    scores = np.abs(preds.target.astype(np.float64) - preds.prediction)
    scores = scores / window_scale(ds) if method == "scaled" else scores
    return np.repeat(scores[:, None], k, axis=1)


@dataclass(frozen=True)
class QuantileCalibration(_Calibration):
    """Conformalised quantile regression: each central quantile pair of a quantile model
    is widened by a radius (negative: narrowed), static or rolling (see `_Calibration`).

    Args:
        levels: the model's quantile levels (ascending).
    """

    levels: tuple[float, ...] = ()

    @classmethod
    def calibrate(
        cls, preds: Predictions, ds: WindowDataset | None = None, *, rolling: bool = True
    ) -> QuantileCalibration:
        """Calibrate a quantile model's validation predictions (`preds.quantiles`).

        Args:
            preds: predictions with quantiles, of the validation windows.
            ds: those windows (unused; the same call as `ConformalIntervals.calibrate`).
            rolling: recalibrate as actuals arrive (see `_Calibration`).
        """
        q, levels = _model_quantiles(preds)
        pairs = central_levels(levels)
        if not pairs:
            raise ValueError(f"quantile levels {levels} hold no central pair (e.g. 0.1 and 0.9)")
        series, origin = np.asarray(preds.series_index), np.asarray(preds.origin)
        window = _rolling_window(preds, rolling)
        return cls(tuple(pairs), _cqr_scores(preds), series, origin, window, levels=levels)

    def quantiles(self, preds: Predictions, ds: WindowDataset | None = None) -> np.ndarray:
        """[N, H, targets, Q] calibrated quantile forecasts at `levels`.

        Args:
            preds: predictions with quantiles (with actuals for rolling calibration).
            ds: unused (the same call as `ConformalIntervals.quantiles`).
        """
        q, levels = _model_quantiles(preds)
        if tuple(levels) != tuple(self.levels):
            raise ValueError(f"predictions have quantile levels {levels}, calibrated {self.levels}")
        radii = self._radii(_cqr_scores(preds), preds)  # [K, N, H, T]
        q = q.copy()
        for k, (i, j) in enumerate(central_levels(levels).values()):
            q[..., i] -= radii[k]
            q[..., j] += radii[k]
        return np.sort(q, axis=-1)  # a narrowed pair must not cross its neighbours


def _cqr_scores(preds: Predictions) -> np.ndarray:
    """[N, K, H, targets] CQR scores ``max(lower - y, y - upper)`` of each central pair."""
    q, levels = _model_quantiles(preds)
    y = preds.target.astype(np.float64)
    pairs = central_levels(levels).values()
    return np.stack([np.maximum(q[..., i] - y, y - q[..., j]) for i, j in pairs], axis=1)


def _position(coverages: Sequence[float], coverage: float) -> int:
    for k, c in enumerate(coverages):
        if abs(c - coverage) < 1e-9:
            return k
    raise ValueError(f"coverage {coverage} was not calibrated; calibrated: {list(coverages)}")


def _model_quantiles(preds: Predictions) -> tuple[np.ndarray, tuple[float, ...]]:
    if preds.quantiles is None or preds.quantile_levels is None:
        raise ValueError("these predictions hold no quantiles (a model without a quantile head)")
    return preds.quantiles.astype(np.float64), tuple(preds.quantile_levels)


Calibration = ConformalIntervals | QuantileCalibration


def calibrate(
    model: Forecaster,
    val: WindowDataset,
    *,
    coverages: Sequence[float] = (0.8,),
    method: str = "scaled",
    rolling: bool = True,
    val_preds: Predictions | None = None,
) -> Calibration:
    """The interval calibration of a fitted model on its validation windows: CQR on its
    quantiles when it has a quantile head, split conformal on its point forecast otherwise.

    Args:
        model: a fitted forecaster.
        val: the validation windows (`bundle.val`).
        coverages: coverage levels of the conformal intervals (a quantile model's levels
            are those of its quantile pairs).
        method: conformal residuals 'absolute' or 'scaled' by each window's scale.
        rolling: recalibrate as actuals arrive (see `_Calibration`); False: calibrate on
            the validation windows only.
        val_preds: the model's predictions of `val`, if already made.
    """
    if val is None or len(val) == 0:
        raise ValueError("interval calibration needs validation windows; the data has none")
    preds = val_preds if val_preds is not None else predict_dataset(model, val)
    if preds.quantiles is not None:
        return QuantileCalibration.calibrate(preds, val, rolling=rolling)
    return ConformalIntervals.calibrate(
        preds, val, coverages=coverages, method=method, rolling=rolling
    )


def quantiles_to_original(q: np.ndarray, data: DataBundle, ds: WindowDataset) -> np.ndarray:
    """Quantile forecasts [N, H, targets, Q] of `ds` from the scaled space to original
    units (the scaler is affine with a positive scale, so order is kept).

    Args:
        q: quantile forecasts in the scaled space.
        data: the prepared data (its scaler).
        ds: the windows.
    """
    return np.stack([data.to_original(q[..., k], ds) for k in range(q.shape[-1])], axis=-1)


@dataclass(frozen=True)
class IntervalScores:
    """A model's calibrated intervals on the test windows, scored.

    Args:
        metrics: `intervals` ('cqr' or 'conformal'), then
            `forecast.metrics.probabilistic_metrics`.
        per_step: the same per horizon step (column `step`, then metrics).
        quantiles: [N, H, targets, Q] calibrated quantile forecasts (scaled space).
        levels: their Q levels.
    """

    metrics: dict[str, float | str]
    per_step: pd.DataFrame
    quantiles: np.ndarray
    levels: tuple[float, ...]

    def band(self, coverage: float = 0.8) -> tuple[float, np.ndarray, np.ndarray]:
        """(coverage, lower, upper) of the central interval at `coverage`, or the widest
        one the levels hold when that one is not among them.

        Args:
            coverage: the wanted level.
        """
        pairs = central_levels(self.levels)
        level = coverage if coverage in pairs else max(pairs)
        i, j = pairs[level]
        return level, self.quantiles[..., i], self.quantiles[..., j]


def original_units_metrics(
    data: DataBundle, test: Predictions, quantiles: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """Interval widths and quantile losses on the data's own scale: `orig_width_80`, ...,
    `orig_pinball`, `orig_wql`, `orig_crps` (coverage is the same in either unit).

    Args:
        data: the prepared data (its scaler).
        test: the model's predictions of `data.test` (their actuals).
        quantiles: [N, H, targets, Q] calibrated quantiles of `data.test`, scaled.
        levels: their Q levels.
    """
    y = data.to_original(test.target, data.test)
    q = quantiles_to_original(quantiles, data, data.test)  # [N, H, targets, Q]
    scores = probabilistic_metrics(y, q, levels)
    return {f"orig_{k}": v for k, v in scores.items() if not k.startswith("coverage_")}


def interval_scores(
    model: Forecaster,
    data: DataBundle,
    test: Predictions,
    *,
    coverages: Sequence[float] = COVERAGE_LEVELS,
    val_preds: Predictions | None = None,
) -> IntervalScores | None:
    """A fitted model's intervals calibrated on `data.val` and scored on the test
    windows; None when the data has no validation windows.

    Args:
        model: the fitted forecaster.
        data: the prepared data (`val` calibrates, `test` is scored).
        test: the model's predictions of `data.test`.
        coverages: the conformal coverage levels.
        val_preds: the model's predictions of `data.val`, if already made.
    """
    if data.val is None or len(data.val) == 0:
        return None
    cal = calibrate(model, data.val, coverages=coverages, val_preds=val_preds)
    q = cal.quantiles(test, data.test)
    kind = "cqr" if isinstance(cal, QuantileCalibration) else "conformal"
    row = {"intervals": kind, **probabilistic_metrics(test.target, q, cal.levels)}
    row.update(original_units_metrics(data, test, q, cal.levels))
    return IntervalScores(
        row, probabilistic_per_horizon(test.target, q, cal.levels), q, tuple(cal.levels)
    )
