"""Synthetic datasets with a known ground truth, for testing models and attributions.

Two generators:

- `make_driver_dataset`: the target is driven by one covariate at a fixed lag, plus a
  daily and a weekly sinusoid and Gaussian noise. The other covariates ("distractors")
  have the same dynamics as the driver but never touch the target, so a model (or an
  attention map) that relies on them is measurably wrong.
- `make_lagged_driver_dataset`: the harder case attention should solve. The lag is not a
  multiple of the season, the noise is AR(1), and the distractors are *correlated* with
  the driver (a smoothed copy and a shifted, noisy copy, each suggesting a wrong lag)
  beside independent noise covariates. `conditional_mean` gives the best possible
  forecast, so a model's error can be compared with the noise floor.

Everything is generated from ``np.random.default_rng(seed)``: the same seed gives a
bitwise-identical frame.
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
        distractor_lags: For distractors correlated with the driver, the lag (rows
            before the target) at which that distractor carries the driver's relevant
            value: the lag an attention map would point at if it read the distractor.
    """

    driver: str
    lag: int
    coefficient: float
    distractors: tuple[str, ...]
    period_daily: int
    period_weekly: int
    distractor_lags: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        """Rebuild from `dataclasses.asdict` output read back from JSON (lists as tuples).

        Args:
            data: the dict.
        """
        return cls(
            **{
                **data,
                "distractors": tuple(data["distractors"]),
                "distractor_lags": tuple(
                    (str(n), int(k)) for n, k in data.get("distractor_lags", ())
                ),
            }
        )


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated frame and the truth behind it.

    Args:
        frame: Columns ``date``, ``target``, then the covariates ``x0, x1, ...``.
        target: Name of the target column.
        covariates: Names of the covariate columns, in order.
        truth: How the target was generated.
        freq: Pandas frequency string of the ``date`` column.
        noise: The target's noise series [n_rows] (what no model can predict beyond its
            AR(1) part); None where unknown.
        noise_phi: AR(1) coefficient of ``noise`` (0 for independent noise).
    """

    frame: pd.DataFrame
    target: str
    covariates: tuple[str, ...]
    truth: GroundTruth
    freq: str
    noise: np.ndarray | None = None
    noise_phi: float = 0.0

    def conditional_mean(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        """The best forecast of the target, E[y(o + h) | rows <= o], as [N, horizon].

        The signal part (lagged driver, seasonality) is known at the origin when the lag
        is at least the horizon, and the AR(1) noise is forecast as phi^h * noise(o); the
        error of this forecast is the noise floor no model can beat.

        Args:
            origins: [N] row of the last input of each window (0-based frame rows).
            horizon: steps ahead H.
        """
        if self.noise is None:
            raise ValueError("this dataset does not record its noise; no conditional mean")
        if self.truth.lag < horizon:
            raise ValueError(
                f"the driver's lag {self.truth.lag} is shorter than horizon {horizon}: its "
                "value is not known at the origin, so the conditional mean is not this one"
            )
        origins = np.asarray(origins, dtype=np.int64)
        steps = np.arange(1, horizon + 1)
        rows = origins[:, None] + steps[None, :]  # [N, H]
        y = self.frame[self.target].to_numpy()
        signal = y[rows] - self.noise[rows]
        return signal + self.noise_phi ** steps[None, :] * self.noise[origins][:, None]


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
    noise_series = noise * rng.standard_normal(n_rows)
    target = (
        coefficient * x[:n_rows, driver]  # row t of the frame is row t + lag of x
        + daily_amplitude * np.sin(2 * np.pi * t / period_daily)
        + weekly_amplitude * np.sin(2 * np.pi * t / period_weekly)
        + noise_series
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
    return SyntheticDataset(frame, "target", names, truth, freq, noise=noise_series)


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


def make_lagged_driver_dataset(
    n_rows: int = 8000,
    *,
    seed: int = 0,
    lag: int = 17,
    coefficient: float = 1.0,
    daily_amplitude: float = 0.5,
    noise: float = 0.12,
    noise_phi: float = 0.5,
    smooth: float = 0.6,
    shift: int = 5,
    distractor_noise: float = 0.5,
    n_noise: int = 2,
    freq: str = "h",
    start: str = "2021-01-04",
) -> SyntheticDataset:
    """Target = coefficient * driver[t - lag] + daily sinusoid + AR(1) noise, with
    distractors correlated with the driver.

    Covariates, in a column order drawn from the rng and named ``x0, x1, ...``:

    - the driver, AR(1) with phi = ``AR_PHI`` and unit variance;
    - a smoothed copy: an exponential moving average of the driver (weight ``smooth`` on
      the past, causal), plus noise; it correlates best with the driver k rows earlier
      (k measured on the generated rows, 1 at the default), so reading it suggests the
      lag ``lag - k``;
    - a shifted copy: d[t] = driver[t - shift] plus noise, so d carries at t - lag +
      shift the driver value the target reads at t: it suggests the lag ``lag - shift``;
    - ``n_noise`` independent AR(1) covariates.

    The noise on both copies (``distractor_noise``, on unit-variance series) makes them
    strictly worse than the driver, so the driver is the one right answer. The target's
    noise is AR(1) with coefficient ``noise_phi`` and marginal standard deviation
    ``noise``; `SyntheticDataset.conditional_mean` gives the best possible forecast.

    Args:
        n_rows: Rows in the frame.
        seed: Seed for ``np.random.default_rng``.
        lag: Delay in rows from the driver to the target; best not a multiple of the
            daily period, so seasonality cannot stand in for it.
        coefficient: Weight of the lagged driver.
        daily_amplitude: Amplitude of the daily sinusoid.
        noise: Marginal standard deviation of the target's AR(1) noise (>= 0).
        noise_phi: AR(1) coefficient of that noise, in [0, 1).
        smooth: Weight on the past of the smoothed copy's moving average, in [0, 1).
        shift: Delay in rows of the shifted copy, 1 <= shift < lag.
        distractor_noise: Standard deviation of the noise added to both copies.
        n_noise: Independent AR(1) covariates (>= 0).
        freq: Fixed pandas frequency whose step divides one day, e.g. ``"h"``.
        start: First timestamp.

    >>> ds = make_lagged_driver_dataset(seed=1)
    >>> ds.truth.lag, len(ds.covariates), ds.truth.driver in ds.covariates
    (17, 5, True)
    >>> sorted(k for _, k in ds.truth.distractor_lags)
    [12, 16]
    """
    _check_args(n_rows, 1, lag, noise)
    if not 0.0 <= noise_phi < 1.0:
        raise ValueError(f"noise_phi must be in [0, 1), got {noise_phi}")
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if not 1 <= shift < lag:
        raise ValueError(f"shift must be in [1, lag) = [1, {lag}), got {shift}")
    if n_noise < 0 or distractor_noise < 0:
        raise ValueError(
            f"n_noise and distractor_noise must be >= 0, got {n_noise} and {distractor_noise}"
        )
    period_daily = rows_per_day(freq)
    rng = np.random.default_rng(seed)
    burn = lag + shift + 50  # the moving average forgets its start within ~50 rows
    x = ar1(rng, n_rows + burn, 1)[:, 0]  # driver; frame row t is x[t + burn]
    ema = np.empty_like(x)
    ema[0] = x[0]
    for t in range(1, len(x)):
        ema[t] = smooth * ema[t - 1] + (1.0 - smooth) * x[t]
    ema /= ema[burn:].std()  # unit variance, like every other covariate
    rows = np.arange(n_rows) + burn
    covs = {
        "driver": x[rows],
        "smoothed": ema[rows] + distractor_noise * rng.standard_normal(n_rows),
        "shifted": x[rows - shift] + distractor_noise * rng.standard_normal(n_rows),
    }
    for i in range(n_noise):
        covs[f"noise{i}"] = ar1(rng, n_rows, 1)[:, 0]
    innovations = rng.standard_normal(n_rows) * noise * np.sqrt(1.0 - noise_phi**2)
    noise_series = np.empty(n_rows)
    noise_series[0] = noise * rng.standard_normal()  # stationary start
    for t in range(1, n_rows):
        noise_series[t] = noise_phi * noise_series[t - 1] + innovations[t]
    t = np.arange(n_rows)
    target = (
        coefficient * x[rows - lag]
        + daily_amplitude * np.sin(2 * np.pi * t / period_daily)
        + noise_series
    )
    order = rng.permutation(len(covs))
    kinds = list(covs)
    names = {kinds[k]: f"x{i}" for i, k in enumerate(order)}
    frame = pd.DataFrame({"date": pd.date_range(start, periods=n_rows, freq=freq)})
    frame["target"] = target
    for i, k in enumerate(order):
        frame[f"x{i}"] = covs[kinds[k]]
    # The delay at which the moving average tracks the driver best, measured.
    corr = [np.corrcoef(ema[rows], x[rows - k])[0, 1] for k in range(shift + 1)]
    delay = int(np.argmax(corr))
    truth = GroundTruth(
        driver=names["driver"],
        lag=lag,
        coefficient=float(coefficient),
        distractors=tuple(names[k] for k in kinds if k != "driver"),
        period_daily=period_daily,
        period_weekly=7 * period_daily,
        distractor_lags=((names["smoothed"], lag - delay), (names["shifted"], lag - shift)),
    )
    covariates = tuple(f"x{i}" for i in range(len(covs)))
    return SyntheticDataset(
        frame, "target", covariates, truth, freq, noise=noise_series, noise_phi=noise_phi
    )
