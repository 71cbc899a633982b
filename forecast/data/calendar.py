"""Calendar features derived from a time index: known in the future by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

_MINUTE, _HOUR, _DAY = 60, 3600, 86400


def seasonal_period(freq: str) -> int:
    """Rows in one natural season of `freq`: a day for sub-daily data, a week for daily.

    Args:
        freq: pandas frequency alias.

    >>> seasonal_period("h"), seasonal_period("15min"), seasonal_period("D")
    (24, 96, 7)
    """
    seconds = _step_seconds(freq)
    if seconds is None or seconds > _DAY:
        return 1
    if seconds == _DAY:
        return 7
    return max(1, round(_DAY / seconds))


def _step_seconds(freq: str) -> float | None:
    offset = pd.tseries.frequencies.to_offset(freq)
    try:
        return pd.Timedelta(offset).total_seconds()
    except ValueError:  # months, quarters, years: not a fixed length
        return None


def calendar_features(times: pd.DatetimeIndex, freq: str) -> pd.DataFrame:
    """Calendar features scaled to [-0.5, 0.5], only those finer than a season of `freq`.

    Args:
        times: the time index.
        freq: its frequency; decides which features are informative.
    """
    seconds = _step_seconds(freq)
    feats: dict[str, np.ndarray] = {}
    if seconds is not None and seconds < _HOUR:
        feats["minute_of_hour"] = times.minute.to_numpy() / 59.0 - 0.5
    if seconds is not None and seconds < _DAY:
        feats["hour_of_day"] = times.hour.to_numpy() / 23.0 - 0.5
    if seconds is not None and seconds <= _DAY:
        feats["day_of_week"] = times.day_of_week.to_numpy() / 6.0 - 0.5
    if seconds is None or seconds <= 7 * _DAY:
        feats["day_of_month"] = (times.day.to_numpy() - 1) / 30.0 - 0.5
    feats["month_of_year"] = (times.month.to_numpy() - 1) / 11.0 - 0.5
    return pd.DataFrame(feats, index=times).astype(np.float32)
