"""Calendar features derived from a time index: known in the future by construction.

Each calendar cycle is encoded as a point on the unit circle, `<name>_sin` and
`<name>_cos`, so the last hour of a day sits next to the first one and any sinusoid
with that period is a linear function of the pair (a linear ramp would need a model to
bend it). The phase is continuous (the hour's phase includes the minutes, the week's
the hours), so the features are smooth at every frequency.

Cycles by name (`CALENDAR`): 'minute' (of the hour), 'hour' (of the day), 'weekday'
(the week), 'day' (of the month) and 'month' (of the year). `default_calendar` picks
those a frequency resolves and a training period covers at least twice; the monthly and
yearly cycles only when the training part spans two years or more, as a shorter span
shows each month at most once and a model would learn the months it saw, not a season.

>>> times = pd.date_range("2024-01-01", periods=4, freq="6h")
>>> calendar_features(times, ["hour"]).round(3).to_dict("list")
{'hour_sin': [0.0, 1.0, 0.0, -1.0], 'hour_cos': [1.0, 0.0, -1.0, -0.0]}
>>> default_calendar("h", pd.Timedelta(days=300))
['hour', 'weekday']
>>> default_calendar("D", pd.Timedelta(days=1000))
['weekday', 'day', 'month']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_TWO_YEARS = 2 * 365 * _DAY


def _minute(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.minute + t.second / 60.0) / 60.0


def _hour(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.hour + t.minute / 60.0 + t.second / 3600.0) / 24.0


def _weekday(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.day_of_week + _hour(t)) / 7.0


def _day(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.day - 1 + _hour(t)) / t.days_in_month


def _month(t: pd.DatetimeIndex) -> np.ndarray:
    days = np.where(t.is_leap_year, 366.0, 365.0)
    return (t.day_of_year - 1 + _hour(t)) / days


CALENDAR: dict[str, tuple[Callable[[pd.DatetimeIndex], np.ndarray], float]] = {
    "minute": (_minute, _HOUR),
    "hour": (_hour, _DAY),
    "weekday": (_weekday, 7 * _DAY),
    "day": (_day, 30.44 * _DAY),
    "month": (_month, 365.25 * _DAY),
}
"""Calendar cycles by name: (phase in [0, 1) of a time index, cycle length in seconds)."""


def seasonal_period(freq: str) -> int:
    """Rows in one natural season of `freq`: a day for sub-daily data, a week for daily;
    1 (no season) for monthly and longer steps and for an integer step index ('step').

    Args:
        freq: pandas frequency alias, or 'step'.

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
    if freq == "step":  # an integer step index (frame.STEP): no time unit
        return None
    offset = pd.tseries.frequencies.to_offset(freq)
    try:
        return pd.Timedelta(offset).total_seconds()
    except ValueError:  # months, quarters, years: not a fixed length
        return None


def check_calendar(names: Sequence[str]) -> list[str]:
    """The names, checked against `CALENDAR`.

    Args:
        names: calendar cycle names.
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in CALENDAR]
    if unknown:
        raise ValueError(
            f"unknown calendar feature(s) {unknown}; expected some of {list(CALENDAR)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"calendar features are listed twice: {names}")
    return names


def default_calendar(freq: str, span: pd.Timedelta | None) -> list[str]:
    """The cycles worth encoding for data at `freq` whose training part spans `span`.

    A cycle is kept when a step of `freq` is shorter than half of it (it is resolved)
    and the span covers it twice; 'day' and 'month' also need a span of two years.

    Args:
        freq: pandas frequency alias.
        span: time covered by the training rows (None: assume long enough).
    """
    step = _step_seconds(freq)
    covered = np.inf if span is None else pd.Timedelta(span).total_seconds()
    names = []
    for name, (_, cycle) in CALENDAR.items():
        resolved = (step if step is not None else 31 * _DAY) < cycle / 2
        long_cycle = name in ("day", "month")
        enough = covered >= (_TWO_YEARS if long_cycle else 2 * cycle)
        if resolved and enough:
            names.append(name)
    return names


def calendar_features(times: pd.DatetimeIndex, names: Sequence[str]) -> pd.DataFrame:
    """`<name>_sin`, `<name>_cos` for each cycle in `names`, float32, indexed by `times`.

    Args:
        times: the time index.
        names: cycles of `CALENDAR`.
    """
    times = pd.DatetimeIndex(times)
    feats: dict[str, np.ndarray] = {}
    for name in check_calendar(names):
        phase = 2 * np.pi * np.asarray(CALENDAR[name][0](times), dtype=np.float64)
        feats[f"{name}_sin"] = np.sin(phase)
        feats[f"{name}_cos"] = np.cos(phase)
    return pd.DataFrame(feats, index=times).astype(np.float32)
