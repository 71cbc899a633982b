"""Load a user's DataFrame into a validated, numeric `SeriesFrame`.

This is where bad input is caught: every check raises a `ValueError` that names the
column, row or timestamp at fault. Nothing downstream re-validates.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from forecast.data.calendar import calendar_features, check_calendar, default_calendar

log = logging.getLogger(__name__)

FillPolicy = Literal["ffill", "interpolate", "zero"]
FILL_POLICIES: tuple[str, ...] = ("ffill", "interpolate", "zero")
GapPolicy = Literal["error", "fill", "keep"]
GAP_POLICIES: tuple[str, ...] = ("error", "fill", "keep")
STEP = "step"
"""Frequency of a frame whose time column is an integer step index (0, 1, 2, ...)."""


@dataclass(frozen=True)
class ColumnRoles:
    """Which column plays which part.

    Args:
        targets: columns to forecast.
        past_covariates: columns observed only up to the forecast origin (encoder input).
        known_covariates: user columns whose future values are known (decoder input too).
        calendar: calendar features derived from the time index (known in the future),
            each a sin/cos pair (see `forecast.data.calendar`): True picks them from the
            frequency and the training period (`default_calendar`), False adds none, and
            a list of names ('minute', 'hour', 'weekday', 'day', 'month') adds those.
        time_column: name of the time column; None means the frame has a DatetimeIndex.
        series_id: column naming the series in a long-format frame with several series.
    """

    targets: tuple[str, ...]
    past_covariates: tuple[str, ...] = ()
    known_covariates: tuple[str, ...] = ()
    calendar: bool | tuple[str, ...] = True
    time_column: str | None = "date"
    series_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("targets", "past_covariates", "known_covariates"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            else:
                object.__setattr__(self, name, tuple(value))
        if not self.targets:
            raise ValueError("ColumnRoles needs at least one target column, got none")
        if not isinstance(self.calendar, bool):
            object.__setattr__(self, "calendar", tuple(check_calendar(self.calendar)))
        seen: dict[str, str] = {}
        for role in ("targets", "past_covariates", "known_covariates"):
            for col in getattr(self, role):
                if col in seen:
                    raise ValueError(f"column {col!r} is given two roles: {seen[col]} and {role}")
                seen[col] = role


@dataclass
class SeriesFrame:
    """Validated series as one float32 array, several series stacked along time.

    Columns are ordered targets, past covariates, known covariates, calendar features, so
    every role is a contiguous slice. Rows of series `s` are `bounds[s]:bounds[s + 1]`.
    """

    values: np.ndarray  # [T_total, C] float32
    timestamps: np.ndarray  # [T_total] datetime64[ns], or int64 steps when freq is STEP
    bounds: np.ndarray  # [S + 1] int64 row offsets of each series
    series_ids: list[str]
    targets: list[str]
    past_covariates: list[str]
    known_covariates: list[str]  # user columns + calendar features
    calendar_columns: list[str]
    freq: str
    meta: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return self.targets + self.past_covariates + self.known_covariates

    @property
    def n_series(self) -> int:
        return len(self.series_ids)

    def lengths(self) -> np.ndarray:
        """Rows per series."""
        return np.diff(self.bounds)

    def role_slice(self, role: str) -> slice:
        """Column slice of a role: 'targets', 'past_covariates' or 'known_covariates'."""
        n_t, n_p = len(self.targets), len(self.past_covariates)
        n_k = len(self.known_covariates)
        return {
            "targets": slice(0, n_t),
            "past_covariates": slice(n_t, n_t + n_p),
            "known_covariates": slice(n_t + n_p, n_t + n_p + n_k),
        }[role]

    @property
    def n_scaled(self) -> int:
        """Number of leading columns that are scaled (all but calendar features)."""
        return len(self.columns) - len(self.calendar_columns)


def _check_columns(df: pd.DataFrame, roles: ColumnRoles) -> None:
    wanted = [*roles.targets, *roles.past_covariates, *roles.known_covariates]
    if roles.time_column is not None:
        wanted.append(roles.time_column)
    if roles.series_id is not None:
        wanted.append(roles.series_id)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"unknown column(s) {missing}; the frame has columns {list(df.columns)}")


def is_step_index(values: pd.Series | np.ndarray | pd.Index) -> bool:
    """Whether a time column holds integers (a step index 0, 1, 2, ...), not dates."""
    dtype = getattr(values, "dtype", None)
    return (
        dtype is not None
        and pd.api.types.is_integer_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
    )


def _timestamps(df: pd.DataFrame, roles: ColumnRoles) -> pd.Index:
    """The time index: a DatetimeIndex, or an int64 Index for an integer step column."""
    if roles.time_column is None:
        if not isinstance(df.index, pd.DatetimeIndex):
            raise ValueError(
                "time_column is None, so the frame needs a DatetimeIndex, "
                f"but its index is a {type(df.index).__name__}"
            )
        return df.index
    col = df[roles.time_column]
    if is_step_index(col):  # 0, 1, 2, ...: steps, not nanoseconds since 1970
        return pd.Index(col.to_numpy(dtype=np.int64))
    if pd.api.types.is_float_dtype(col):
        raise ValueError(
            f"time column {roles.time_column!r} holds floats ({col.iloc[0]!r}, ...): write "
            "dates (e.g. 2020-01-01 00:00) or an integer step index (0, 1, 2, ...)"
        )
    try:
        return pd.DatetimeIndex(pd.to_datetime(col))
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"time column {roles.time_column!r} could not be parsed as timestamps: {err}"
        ) from None


def _check_numeric(df: pd.DataFrame, cols: list[str]) -> None:
    for col in cols:
        if not (pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            example = df[col][bad].iloc[0] if bad.any() else df[col].iloc[0]
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise ValueError(
                f"column {col!r} is not numeric (dtype {df[col].dtype}); "
                f"first non-numeric value {example!r} at row {row}"
            )


def _fill(values: np.ndarray, policy: FillPolicy) -> np.ndarray:
    frame = pd.DataFrame(values)
    if policy == "ffill":
        frame = frame.ffill().bfill()
    elif policy == "interpolate":
        frame = frame.interpolate(limit_direction="both")
    else:
        frame = frame.fillna(0.0)
    return frame.to_numpy(dtype=np.float32)


def _check_finite(
    values: np.ndarray, cols: list[str], times: pd.DatetimeIndex, fill: FillPolicy | None, sid: str
) -> np.ndarray:
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if fill is not None and not np.isinf(values).any():
        log.info("series %s: filled %d missing values with policy %r", sid, int(bad.sum()), fill)
        return _fill(values, fill)
    row, c = (int(i) for i in np.argwhere(bad)[0])
    kind = "infinite" if np.isinf(values[row, c]) else "NaN"
    hint = (
        ""
        if kind == "infinite"
        else f"; pass fill= (--fill) one of {list(FILL_POLICIES)} to fill them"
    )
    where = f" of series {sid!r}" if sid else ""
    raise ValueError(
        f"column {cols[c]!r}{where} has {int(bad[:, c].sum())} NaN/infinite value(s); "
        f"first is {kind} at row {row} ({times[row]}){hint}"
    )


def _as_int64(times: pd.Index) -> np.ndarray:
    """Timestamps as int64 (nanoseconds for dates, the steps themselves for a step index)."""
    if isinstance(times, pd.DatetimeIndex):
        return times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return times.to_numpy(dtype=np.int64)


def _row_names(rows: np.ndarray, sid: str, positions: np.ndarray) -> np.ndarray:
    """Row numbers for messages: the row in the user's frame for one series (before any
    duplicate was dropped), the row within the series for several."""
    return np.arange(len(rows)) if sid else positions[rows]


def _check_times(
    times: pd.Index, sid: str, rows: np.ndarray, df: pd.DataFrame, names: np.ndarray
) -> None:
    """Times present, unique and sorted; a duplicate names both rows.

    Args:
        times: the series' timestamps.
        sid: the series id ("" for one series).
        rows: the series' positions in `df`.
        df: the frame.
        names: the row numbers used in messages (see `_row_names`).
    """
    where = f" in series {sid!r}" if sid else ""
    if times.hasnans:
        row = int(np.flatnonzero(times.isna())[0])
        raise ValueError(f"missing timestamp at row {names[row]}{where}")
    diffs = np.diff(_as_int64(times))
    if (diffs == 0).any():
        i = int(np.flatnonzero(diffs == 0)[0]) + 1
        a, b = df.iloc[[rows[i - 1]]], df.iloc[[rows[i]]]
        pair = f"rows {names[i - 1]} and {names[i]}"
        if a.reset_index(drop=True).equals(b.reset_index(drop=True)):
            raise ValueError(
                f"{pair} are identical (timestamp {times[i]}){where}; pass "
                "drop_duplicates=True (--drop-duplicates) to drop exact duplicate rows"
            )
        raise ValueError(
            f"duplicate timestamp {times[i]} at {pair}{where}, with different values; keep "
            "one of them (not dropped automatically)"
        )
    if (diffs < 0).any():
        row = int(np.flatnonzero(diffs < 0)[0]) + 1
        raise ValueError(
            f"timestamps are not sorted{where}: row {names[row]} ({times[row]}) comes after "
            f"{times[row - 1]}; sort the frame by time first"
        )


def _infer_freq(times: pd.DatetimeIndex) -> str:
    if len(times) < 3:
        raise ValueError(
            f"cannot infer a frequency from {len(times)} timestamps; pass freq= (--freq)"
        )
    with warnings.catch_warnings():  # pandas 3 announces an offset return type; take either
        warnings.filterwarnings("ignore", message=".*infer_freq.*")
        freq = pd.infer_freq(times[: min(len(times), 1000)])
    freq = getattr(freq, "freqstr", freq)
    if freq is None:  # gaps at the start: fall back to the most common step
        step = pd.Series(times).diff().mode().iloc[0]
        freq = pd.tseries.frequencies.to_offset(pd.Timedelta(step)).freqstr
    return freq


def _grid(times: pd.Index, freq: str) -> pd.Index:
    """The regular time grid from the first to the last timestamp at `freq`."""
    if freq == STEP:
        steps = _as_int64(times)
        step = int(pd.Series(np.diff(steps)).mode().iloc[0]) if len(steps) > 1 else 1
        return pd.Index(np.arange(steps[0], steps[-1] + 1, step, dtype=np.int64))
    return pd.date_range(times[0], times[-1], freq=freq)


def _check_regular(
    times: pd.Index, freq: str, sid: str, gaps: GapPolicy, names: np.ndarray
) -> pd.Index | None:
    """None when `times` is regular at `freq` (or gaps are kept); else, for gaps='fill',
    the full grid to reindex to. Raises for gaps='error' or timestamps off the grid; row
    numbers in messages are `names` (see `_row_names`)."""
    grid = _grid(times, freq)
    if len(grid) == len(times) and times.equals(grid):
        return None
    where = f" in series {sid!r}" if sid else ""
    missing = len(grid) - len(times)
    off_grid = times.difference(grid)
    if gaps == "keep" and len(off_grid) == 0:
        log.warning(
            "%d missing timestamp(s) at %r%s kept as gaps (rows stay consecutive)",
            missing,
            freq,
            where,
        )
        return None
    if len(off_grid) or missing <= 0:
        row = int(np.flatnonzero(~times.isin(grid))[0]) if len(off_grid) else 0
        raise ValueError(
            f"timestamp {times[row]} at row {names[row]}{where} is not on the {freq!r} grid that "
            f"starts at {times[0]}; pass the right freq= (--freq)"
        )
    row = int(np.flatnonzero(times != grid[: len(times)])[0])
    if gaps == "fill":
        return grid
    raise ValueError(
        f"gap in the {freq!r} frequency{where}: row {names[row]} is {times[row]} but "
        f"{grid[row]} was expected after {times[row - 1]} ({missing} missing timestamp(s)); "
        "pass gaps='fill' with a fill= policy (--gaps fill --fill ffill) to insert them, "
        "gaps='keep' (--gaps keep) to use the rows as they are, or the right freq= (--freq)"
    )


def with_calendar(frame: SeriesFrame, names: list[str]) -> SeriesFrame:
    """A copy of `frame` with the calendar features `names` appended (known covariates).

    Args:
        frame: a frame without calendar features.
        names: calendar cycles, see `forecast.data.calendar`.
    """
    if frame.calendar_columns:
        raise ValueError(f"the frame already has calendar features {frame.calendar_columns}")
    if not names:
        return frame
    blocks = []
    for lo, hi in zip(frame.bounds[:-1], frame.bounds[1:]):
        cal = calendar_features(pd.DatetimeIndex(frame.timestamps[lo:hi]), names)
        blocks.append(cal.to_numpy(dtype=np.float32))
    cols = list(cal.columns)
    values = np.concatenate([frame.values, np.concatenate(blocks, axis=0)], axis=1)
    return SeriesFrame(
        **{
            **frame.__dict__,
            "values": np.ascontiguousarray(values),
            "known_covariates": [*frame.known_covariates, *cols],
            "calendar_columns": cols,
            "meta": {**frame.meta, "calendar": list(names)},
        }
    )


def prepare_frame(
    df: pd.DataFrame,
    roles: ColumnRoles,
    *,
    freq: str | None = None,
    fill: FillPolicy | None = None,
    calendar_span: pd.Timedelta | None = None,
    gaps: GapPolicy = "error",
    drop_duplicates: bool = False,
) -> SeriesFrame:
    """Validate `df` and turn it into a `SeriesFrame`.

    Args:
        df: wide frame (one series) or long frame with a `roles.series_id` column.
        roles: which columns are targets and covariates.
        freq: pandas frequency alias; inferred from the timestamps when None. An integer
            time column (0, 1, 2, ...) is a step index: its frequency is `STEP`, and it
            gets no calendar features.
        fill: fill policy for NaN values ('ffill', 'interpolate', 'zero'); None raises.
        calendar_span: with `roles.calendar` True, the time the training part covers,
            which decides the calendar features; None uses the first series' span
            (`prepare_data` passes the training part's).
        gaps: missing timestamps: 'error' (default), 'fill' (insert them; their values
            are filled with `fill`), or 'keep' (use the rows as they are, consecutive, as
            the literature does for weather.csv).
        drop_duplicates: drop rows that repeat an earlier row exactly (every column); a
            repeated timestamp with different values is always an error.

    Raises:
        ValueError: naming the column, row or timestamp at fault.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if fill is not None and fill not in FILL_POLICIES:
        raise ValueError(f"unknown fill policy {fill!r}; expected one of {list(FILL_POLICIES)}")
    if gaps not in GAP_POLICIES:
        raise ValueError(f"unknown gap policy {gaps!r}; expected one of {list(GAP_POLICIES)}")
    if gaps == "fill" and fill is None:
        raise ValueError(
            f"gaps='fill' needs fill= (--fill) one of {list(FILL_POLICIES)} for the inserted rows"
        )
    if len(df) == 0:
        raise ValueError("the frame is empty")
    _check_columns(df, roles)
    value_cols = [*roles.targets, *roles.past_covariates, *roles.known_covariates]
    _check_numeric(df, value_cols)
    positions = np.arange(len(df))  # rows of the frame as given, for messages
    if drop_duplicates:
        dup = df.duplicated(keep="first").to_numpy()
        if dup.any():
            log.warning(
                "dropped %d exact duplicate row(s), first at row %d",
                int(dup.sum()),
                int(np.flatnonzero(dup)[0]),
            )
            positions = np.flatnonzero(~dup)
            df = df.iloc[positions]
    times_all = _timestamps(df, roles)
    step_index = not isinstance(times_all, pd.DatetimeIndex)
    if step_index and freq not in (None, STEP):
        raise ValueError(
            f"time column {roles.time_column!r} holds integers (a step index), so freq= "
            f"(--freq) does not apply; got {freq!r}"
        )
    if step_index and not isinstance(roles.calendar, bool):
        raise ValueError(
            f"calendar features {list(roles.calendar)} need dates, but time column "
            f"{roles.time_column!r} holds integers (a step index); drop calendar= (--calendar)"
        )

    if roles.series_id is None:
        groups = [("", np.arange(len(df)))]
    else:
        # Each series' rows, series in order of first appearance: one sort, not a scan of
        # every row per series (quadratic for a panel of many series).
        codes, ids = pd.factorize(df[roles.series_id].astype(str).to_numpy())
        cuts = np.cumsum(np.bincount(codes, minlength=len(ids)))[:-1]
        rows_of = np.split(np.argsort(codes, kind="stable"), cuts)
        groups = [(str(s), rows) for s, rows in zip(ids, rows_of)]

    blocks, stamps, bounds = [], [], [0]
    table = df[value_cols]  # once: a column selection per series costs a frame each
    for sid, rows in groups:
        times = times_all[rows]
        names = _row_names(rows, sid, positions)
        _check_times(times, sid, rows, df, names)
        this_freq = STEP if step_index else (freq or _infer_freq(times))
        freq = this_freq  # every series shares the first one's frequency
        grid = _check_regular(times, freq, sid, gaps, names)
        values = table.iloc[rows].to_numpy(dtype=np.float32, copy=True)
        if grid is not None:  # gaps='fill': missing timestamps become NaN rows, then filled
            log.warning(
                "inserted %d missing timestamp(s)%s, values filled with %r",
                len(grid) - len(times),
                f" in series {sid!r}" if sid else "",
                fill,
            )
            full = np.full((len(grid), len(value_cols)), np.nan, dtype=np.float32)
            full[grid.get_indexer(times)] = values
            values, times = _fill(full, fill), grid
        values = _check_finite(values, value_cols, times, fill, sid)
        blocks.append(values)
        stamps.append(_as_int64(times) if step_index else times.to_numpy(dtype="datetime64[ns]"))
        bounds.append(bounds[-1] + len(values))

    values = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
    frame = SeriesFrame(
        values=np.ascontiguousarray(values, dtype=np.float32),
        timestamps=stamps[0] if len(stamps) == 1 else np.concatenate(stamps),
        bounds=np.asarray(bounds, dtype=np.int64),
        series_ids=[sid for sid, _ in groups],
        targets=list(roles.targets),
        past_covariates=list(roles.past_covariates),
        known_covariates=list(roles.known_covariates),
        calendar_columns=[],
        freq=str(freq),
    )
    if roles.calendar is False or step_index:
        return frame
    if roles.calendar is True:
        if calendar_span is None:
            first = frame.timestamps[: int(frame.bounds[1])]
            calendar_span = pd.Timedelta(first[-1] - first[0])
        names = default_calendar(frame.freq, calendar_span)
    else:
        names = list(roles.calendar)
    return with_calendar(frame, names)
