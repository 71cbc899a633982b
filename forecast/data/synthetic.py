"""Synthetic datasets with a known ground truth, for testing models and attributions.

The target is driven by one covariate at a fixed lag, plus a daily and a weekly sinusoid
and Gaussian noise. The other covariates ("distractors") have the same dynamics as the
driver but never touch the target, so a model (or an attention map) that relies on them
is measurably wrong. Everything is generated from ``np.random.default_rng(seed)``: the
same seed gives a bitwise-identical frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

AR_PHI = 0.9
"""AR(1) coefficient of every covariate: memory of ~10 rows, unit marginal variance."""

MIN_ROWS_PAST_LAG = 8
"""``n_rows`` must exceed ``lag`` by more than this, so the lagged effect is observable."""


@dataclass(frozen=True)
class GroundTruth:
    """What generated the target.

    Args:
        driver: Covariate column that drives the target.
        lag: The target at time t depends on ``driver`` at t - lag (rows).
        coefficient: Weight of the lagged driver in the target.
        distractors: Covariate columns with no influence on the target.
        period_daily: Period of the daily sinusoid, in rows.
        period_weekly: Period of the weekly sinusoid, in rows.
    """

    driver: str
    lag: int
    coefficient: float
    distractors: tuple[str, ...]
    period_daily: int
    period_weekly: int


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated frame and the truth behind it.

    Args:
        frame: Columns ``date``, ``target``, then the covariates ``x0, x1, ...``.
        target: Name of the target column.
        covariates: Names of the covariate columns, in order.
        truth: How the target was generated.
        freq: Pandas frequency string of the ``date`` column.
    """

    frame: pd.DataFrame
    target: str
    covariates: tuple[str, ...]
    truth: GroundTruth
    freq: str


def rows_per_day(freq: str) -> int:
    """Number of rows in one day at ``freq``; the step must divide a day evenly.

    Args:
        freq: Pandas frequency string of fixed length, e.g. ``"h"``, ``"15min"``, ``"D"``.

    >>> rows_per_day("h"), rows_per_day("15min"), rows_per_day("D")
    (24, 96, 1)
    """
    try:
        step = pd.Timedelta(to_offset(freq))
    except ValueError as err:
        raise ValueError(
            f"freq={freq!r} is not a fixed-length frequency; expected one like 'h', '15min' or 'D'"
        ) from err
    day = pd.Timedelta(days=1)
    if step <= pd.Timedelta(0) or step > day or day % step != pd.Timedelta(0):
        raise ValueError(
            f"freq={freq!r} has step {step}, which does not divide one day evenly; "
            "expected a step such as '1h', '30min' or '1D'"
        )
    return int(day // step)


def ar1(rng: np.random.Generator, n_rows: int, n_cols: int, phi: float = AR_PHI) -> np.ndarray:
    """Independent stationary AR(1) columns with unit marginal variance, shape [n_rows, n_cols].

    Args:
        rng: Source of randomness.
        n_rows: Length of each series.
        n_cols: Number of independent series.
        phi: Autoregressive coefficient, ``|phi| < 1``.
    """
    shocks = rng.standard_normal((n_rows, n_cols))
    x = np.empty((n_rows, n_cols))
    x[0] = shocks[0]  # start in the stationary distribution N(0, 1): no warm-up needed
    innovation_scale = np.sqrt(1.0 - phi**2)  # keeps Var(x[t]) = 1 for every t
    for t in range(1, n_rows):
        x[t] = phi * x[t - 1] + innovation_scale * shocks[t]
    return x


def _check_args(n_rows: int, n_covariates: int, lag: int, noise: float) -> None:
    if n_covariates < 1:
        raise ValueError(f"n_covariates must be >= 1, got {n_covariates}")
    if lag < 1:
        raise ValueError(f"lag must be >= 1, got {lag}")
    if n_rows <= lag + MIN_ROWS_PAST_LAG:
        raise ValueError(
            f"n_rows must be > lag + {MIN_ROWS_PAST_LAG} = {lag + MIN_ROWS_PAST_LAG}, "
            f"got n_rows={n_rows}"
        )
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")


def make_driver_dataset(
    n_rows: int = 4000,
    *,
    seed: int = 0,
    n_covariates: int = 4,
    driver: int | None = None,
    lag: int = 12,
    coefficient: float = 1.0,
    noise: float = 0.1,
    daily_amplitude: float = 0.5,
    weekly_amplitude: float = 0.3,
    freq: str = "h",
    start: str = "2021-01-04",
) -> SyntheticDataset:
    """Target = coefficient * driver[t - lag] + daily + weekly sinusoids + noise.

    Covariates are independent AR(1) processes (phi = ``AR_PHI``, unit variance). ``lag``
    extra rows are generated before the frame and dropped, so no row has NaN. The driver
    index is always drawn from the rng, then replaced by ``driver`` if given: passing the
    drawn index explicitly reproduces the ``driver=None`` frame exactly. At ``freq="D"``
    the daily period is 1 row, so the daily sinusoid vanishes.

    Args:
        n_rows: Rows in the frame; must exceed ``lag + MIN_ROWS_PAST_LAG``.
        seed: Seed for ``np.random.default_rng``.
        n_covariates: Number of covariate columns ``x0 .. x{n-1}``.
        driver: Index of the driving covariate; drawn from the rng when None.
        lag: Delay, in rows, from the driver to the target (>= 1).
        coefficient: Weight of the lagged driver.
        noise: Standard deviation of the Gaussian noise (>= 0).
        daily_amplitude: Amplitude of the sinusoid with a period of one day.
        weekly_amplitude: Amplitude of the sinusoid with a period of seven days.
        freq: Fixed pandas frequency whose step divides one day, e.g. ``"h"``.
        start: First timestamp.

    >>> ds = make_driver_dataset(100, seed=1, driver=2, lag=3)
    >>> list(ds.frame.columns), ds.truth.driver, ds.truth.distractors
    (['date', 'target', 'x0', 'x1', 'x2', 'x3'], 'x2', ('x0', 'x1', 'x3'))
    """
    _check_args(n_rows, n_covariates, lag, noise)
    period_daily = rows_per_day(freq)
    period_weekly = 7 * period_daily
    rng = np.random.default_rng(seed)
    drawn = int(rng.integers(n_covariates))
    if driver is None:
        driver = drawn
    if not 0 <= driver < n_covariates:
        raise ValueError(f"driver must be in [0, {n_covariates}), got {driver}")

    x = ar1(rng, n_rows + lag, n_covariates)  # [lag + n_rows, C]: first lag rows are burn-in
    t = np.arange(n_rows)
    target = (
        coefficient * x[:n_rows, driver]  # row t of the frame is row t + lag of x
        + daily_amplitude * np.sin(2 * np.pi * t / period_daily)
        + weekly_amplitude * np.sin(2 * np.pi * t / period_weekly)
        + noise * rng.standard_normal(n_rows)
    )
    names = tuple(f"x{i}" for i in range(n_covariates))
    frame = pd.DataFrame({"date": pd.date_range(start, periods=n_rows, freq=freq)})
    frame["target"] = target
    frame[list(names)] = x[lag:]
    truth = GroundTruth(
        driver=names[driver],
        lag=lag,
        coefficient=float(coefficient),
        distractors=tuple(n for i, n in enumerate(names) if i != driver),
        period_daily=period_daily,
        period_weekly=period_weekly,
    )
    return SyntheticDataset(frame, "target", names, truth, freq)


def make_panel_dataset(
    n_series: int = 3,
    n_rows: int | Sequence[int] = 1000,
    *,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[pd.DataFrame, GroundTruth]:
    """Long-format panel: several series sharing one ground truth, each with its own level.

    Every series has the same driver, lag and coefficient but its own covariate paths and
    noise (seeds derived from ``seed``), and a level offset drawn from N(0, 5^2) added to
    its target, so per-series scaling matters. The driver of the first series (drawn or
    given) is used for all of them.

    Args:
        n_series: Number of series, ids ``"s0", "s1", ...``.
        n_rows: Rows per series; a sequence gives each series its own length.
        seed: Seed for the panel; per-series seeds and offsets are drawn from it.
        **kwargs: Passed to ``make_driver_dataset`` (not ``seed``).

    >>> frame, truth = make_panel_dataset(2, [30, 40], lag=4)
    >>> frame.groupby("series_id").size().to_dict()
    {'s0': 30, 's1': 40}
    """
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    lengths = [int(n_rows)] * n_series if np.ndim(n_rows) == 0 else [int(n) for n in n_rows]
    if len(lengths) != n_series:
        raise ValueError(
            f"n_rows has {len(lengths)} lengths but n_series={n_series}; "
            "expected one length per series"
        )
    rng = np.random.default_rng(seed)
    series_seeds = [int(s) for s in rng.integers(2**32, size=n_series)]
    offsets = rng.normal(0.0, 5.0, size=n_series)

    first = make_driver_dataset(lengths[0], seed=series_seeds[0], **kwargs)
    # Later series reuse the first one's driver, so the whole panel shares one truth.
    kwargs = {**kwargs, "driver": first.covariates.index(first.truth.driver)}
    datasets = [first] + [
        make_driver_dataset(lengths[i], seed=series_seeds[i], **kwargs) for i in range(1, n_series)
    ]
    frames = []
    for i, ds in enumerate(datasets):
        frame = ds.frame.assign(target=ds.frame["target"] + offsets[i])
        frame.insert(0, "series_id", f"s{i}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), first.truth
