import dataclasses

import numpy as np
import pandas as pd
import pytest

from forecast.data.synthetic import (
    AR_PHI,
    GroundTruth,
    SyntheticDataset,
    ar1,
    make_driver_dataset,
    make_panel_dataset,
    rows_per_day,
)


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return make_driver_dataset(seed=3)


def test_layout(ds: SyntheticDataset) -> None:
    assert list(ds.frame.columns) == ["date", "target", "x0", "x1", "x2", "x3"]
    assert ds.target == "target"
    assert ds.covariates == ("x0", "x1", "x2", "x3")
    assert ds.freq == "h"
    assert len(ds.frame) == 4000
    truth = ds.truth
    assert isinstance(truth, GroundTruth)
    assert truth.lag == 12 and truth.coefficient == 1.0
    assert (truth.period_daily, truth.period_weekly) == (24, 168)
    assert truth.driver in ds.covariates
    assert set(truth.distractors) == set(ds.covariates) - {truth.driver}


def test_no_nan_and_regular_timestamps(ds: SyntheticDataset) -> None:
    assert not ds.frame.isna().any().any()
    dates = ds.frame["date"]
    assert dates.iloc[0] == pd.Timestamp("2021-01-04")
    assert (dates.diff().iloc[1:] == pd.Timedelta(hours=1)).all()


def test_other_freq() -> None:
    ds = make_driver_dataset(500, freq="15min", start="2022-03-01")
    assert (ds.truth.period_daily, ds.truth.period_weekly) == (96, 672)
    assert ds.frame["date"].iloc[1] == pd.Timestamp("2022-03-01 00:15")


def test_same_seed_identical_different_seed_differs() -> None:
    a = make_driver_dataset(600, seed=7)
    b = make_driver_dataset(600, seed=7)
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert a.truth == b.truth
    c = make_driver_dataset(600, seed=8)
    assert not np.array_equal(a.frame["target"], c.frame["target"])


def test_explicit_driver_matches_drawn_one() -> None:
    drawn = make_driver_dataset(300, seed=5)
    explicit = make_driver_dataset(300, seed=5, driver=drawn.covariates.index(drawn.truth.driver))
    pd.testing.assert_frame_equal(drawn.frame, explicit.frame, check_exact=True)


def test_driver_drives(ds: SyntheticDataset) -> None:
    frame, truth = ds.frame, ds.truth

    def corr(col: str, lag: int) -> float:
        return abs(frame["target"].corr(frame[col].shift(lag)))

    at_lag = corr(truth.driver, truth.lag)
    assert at_lag > 0.85
    best_distractor = max(corr(c, k) for c in truth.distractors for k in range(49))
    assert best_distractor < 0.3
    assert at_lag > corr(truth.driver, truth.lag - 3)
    assert at_lag > corr(truth.driver, truth.lag + 3)


def test_distractors_have_no_influence() -> None:
    # Without noise the target is exactly the lagged driver plus the two sinusoids.
    ds = make_driver_dataset(400, seed=2, noise=0.0, lag=5, coefficient=2.0, driver=1)
    f, truth = ds.frame, ds.truth
    t = np.arange(len(f))
    seasonal = 0.5 * np.sin(2 * np.pi * t / 24) + 0.3 * np.sin(2 * np.pi * t / 168)
    residual = f["target"] - seasonal - 2.0 * f["x1"].shift(5)
    np.testing.assert_allclose(residual.iloc[5:], 0.0, atol=1e-12)
    assert truth.distractors == ("x0", "x2", "x3")


def test_ar1_unit_variance_and_memory() -> None:
    x = ar1(np.random.default_rng(0), 50_000, 2)  # [T, 2]
    assert np.allclose(x.var(axis=0), 1.0, atol=0.1)
    lag1 = np.corrcoef(x[1:, 0], x[:-1, 0])[0, 1]
    assert lag1 == pytest.approx(AR_PHI, abs=0.02)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_covariates": 0}, r"n_covariates must be >= 1, got 0"),
        ({"lag": 0}, r"lag must be >= 1, got 0"),
        ({"n_rows": 20, "lag": 12}, r"n_rows must be > lag \+ 8 = 20, got n_rows=20"),
        ({"driver": 4}, r"driver must be in \[0, 4\), got 4"),
        ({"driver": -1}, r"driver must be in \[0, 4\), got -1"),
        ({"noise": -0.1}, r"noise must be >= 0, got -0.1"),
        ({"freq": "7h"}, r"freq='7h' has step 0 days 07:00:00, which does not divide one day"),
        ({"freq": "W"}, r"freq='W' is not a fixed-length frequency"),
    ],
)
def test_argument_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_driver_dataset(**{"n_rows": 100, **kwargs})


def test_rows_per_day() -> None:
    assert rows_per_day("h") == 24
    assert rows_per_day("30min") == 48
    assert rows_per_day("D") == 1


def test_panel_layout() -> None:
    frame, truth = make_panel_dataset(3, 200, seed=1, lag=6)
    assert list(frame.columns) == ["series_id", "date", "target", "x0", "x1", "x2", "x3"]
    assert frame["series_id"].unique().tolist() == ["s0", "s1", "s2"]
    assert frame.groupby("series_id").size().tolist() == [200, 200, 200]
    assert truth.lag == 6
    assert not frame.isna().any().any()
    for _, g in frame.groupby("series_id"):
        assert g["date"].iloc[0] == pd.Timestamp("2021-01-04")
        assert (g["date"].diff().iloc[1:] == pd.Timedelta(hours=1)).all()
        # Every series shares the truth: the driver at the lag dominates the target.
        corr = g["target"].corr(g[truth.driver].shift(truth.lag))
        assert corr > 0.8


def test_panel_series_differ_and_have_own_levels() -> None:
    frame, _ = make_panel_dataset(3, 500, seed=0)
    groups = [g.reset_index(drop=True) for _, g in frame.groupby("series_id")]
    assert not np.allclose(groups[0]["x0"], groups[1]["x0"])
    levels = [g["target"].mean() for g in groups]
    assert max(levels) - min(levels) > 1.0


def test_panel_deterministic_and_lengths() -> None:
    a, truth_a = make_panel_dataset(2, [50, 80], seed=4, driver=2)
    b, truth_b = make_panel_dataset(2, [50, 80], seed=4, driver=2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert truth_a == truth_b and truth_a.driver == "x2"
    assert a.groupby("series_id").size().to_dict() == {"s0": 50, "s1": 80}


def test_panel_errors() -> None:
    with pytest.raises(ValueError, match=r"n_series must be >= 1, got 0"):
        make_panel_dataset(0)
    with pytest.raises(ValueError, match=r"n_rows has 2 lengths but n_series=3"):
        make_panel_dataset(3, [100, 100])
    with pytest.raises(ValueError, match=r"lag must be >= 1, got 0"):
        make_panel_dataset(2, 100, lag=0)


def test_lagged_driver_dataset_truth_and_noise_floor():
    """The lagged-driver generator: a non-round lag, distractors correlated with the
    driver at the lags they suggest, independent noise covariates, and a conditional
    mean whose error is the AR(1) noise's forecast error."""
    from forecast.data.synthetic import make_lagged_driver_dataset

    ds = make_lagged_driver_dataset(6000, seed=4, lag=17, shift=5, noise=0.2, noise_phi=0.6)
    f, truth = ds.frame, ds.truth
    assert truth.lag == 17 and len(ds.covariates) == 5 and truth.driver in ds.covariates
    lags = dict(truth.distractor_lags)
    assert len(lags) == 2 and 12 in lags.values()  # the shifted copy suggests 17 - 5
    x = f[truth.driver].to_numpy()
    shifted = next(n for n, k in lags.items() if k == 12)
    d = f[shifted].to_numpy()
    assert np.corrcoef(d[5:], x[:-5])[0, 1] > 0.85  # a noisy copy of the driver, 5 rows later
    noise_cols = [c for c in truth.distractors if c not in lags]
    for c in noise_cols:
        assert abs(np.corrcoef(f[c], x)[0, 1]) < 0.1
    # The target is the driver 17 rows earlier plus a daily cycle and the noise.
    y = f["target"].to_numpy()
    t = np.arange(len(y))
    resid = y[17:] - x[:-17] - 0.5 * np.sin(2 * np.pi * t[17:] / 24) - ds.noise[17:]
    np.testing.assert_allclose(resid, 0.0, atol=1e-9)
    # The conditional mean's error is the noise forecast error: var(1 - phi^2h) on average.
    origins = np.arange(100, 5000)
    err = y[origins[:, None] + np.arange(1, 13)] - ds.conditional_mean(origins, 12)
    expected = 0.2**2 * (1 - 0.6 ** (2 * np.arange(1, 13)))
    np.testing.assert_allclose((err**2).mean(axis=0), expected, rtol=0.15)
    with pytest.raises(ValueError, match="shorter than horizon"):
        ds.conditional_mean(origins, 18)
    with pytest.raises(ValueError, match=r"shift must be in \[1, lag\)"):
        make_lagged_driver_dataset(500, lag=5, shift=5)


def test_lagged_driver_same_seed_identical():
    from forecast.data.synthetic import make_lagged_driver_dataset

    a, b = make_lagged_driver_dataset(800, seed=3), make_lagged_driver_dataset(800, seed=3)
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert a.truth == b.truth
    assert GroundTruth.from_dict(dataclasses.asdict(a.truth)) == a.truth
