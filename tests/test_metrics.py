import logging

import numpy as np
import pytest

from forecast.metrics import (
    METRICS,
    compute_metrics,
    mae,
    mape,
    mase,
    mse,
    per_horizon,
    per_horizon_table,
    rmse,
    seasonal_naive_scale,
    smape,
)

# [N=2, H=2, C=1]; errors e = y_pred - y_true = [1, -2, 0, 4]
Y_TRUE = np.array([[[1.0], [2.0]], [[4.0], [-4.0]]])
Y_PRED = np.array([[[2.0], [0.0]], [[4.0], [0.0]]])


def test_hand_computed_values() -> None:
    assert mae(Y_TRUE, Y_PRED) == pytest.approx(7 / 4)
    assert mse(Y_TRUE, Y_PRED) == pytest.approx(21 / 4)
    assert rmse(Y_TRUE, Y_PRED) == pytest.approx(np.sqrt(21 / 4))
    assert mape(Y_TRUE, Y_PRED) == pytest.approx((1 / 1 + 2 / 2 + 0 / 4 + 4 / 4) / 4)
    # 2|e| / (|y| + |yhat|): 2/3, 4/2, 0/8, 8/4
    assert smape(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 2 + 0 + 2) / 4)


def test_accepts_lists_and_perfect_forecast_is_zero() -> None:
    y = Y_TRUE.tolist()
    for name in ["mae", "mse", "rmse", "mape", "smape"]:
        assert METRICS[name](y, y) == 0.0


def test_mape_excludes_zeros() -> None:
    y_true = np.array([[[0.0], [1e-12], [2.0]]])
    y_pred = np.array([[[100.0], [5.0], [3.0]]])
    assert mape(y_true, y_pred) == pytest.approx(0.5)
    assert mape(y_true, y_pred, eps=1e-15) == pytest.approx((5.0 / 1e-12 + 0.5) / 2)


def test_mape_all_zero_is_nan_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    zeros = np.zeros((2, 3, 1))
    with caplog.at_level(logging.WARNING, logger="forecast.metrics"):
        assert np.isnan(mape(zeros, zeros + 1))
    assert "all 6 points have |y_true| <= eps" in caplog.text


def test_smape_zero_over_zero_and_range() -> None:
    assert smape(np.zeros((1, 2, 1)), np.zeros((1, 2, 1))) == 0.0
    # Opposite signs hit the upper bound 2.
    assert smape(np.ones((1, 2, 1)), -np.ones((1, 2, 1))) == 2.0
    rng = np.random.default_rng(0)
    value = smape(rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 3)))
    assert 0.0 <= value <= 2.0


def test_seasonal_naive_scale() -> None:
    train = np.array([[1.0, 0.0], [2.0, 5.0], [4.0, 5.0], [8.0, 2.0]])  # [T=4, C=2]
    np.testing.assert_allclose(seasonal_naive_scale(train, 1), [7 / 3, 8 / 3])
    np.testing.assert_allclose(seasonal_naive_scale(train, 2), [4.5, 4.0])
    np.testing.assert_allclose(seasonal_naive_scale(train[:, 0], 1), [7 / 3])


def test_seasonal_naive_scale_errors() -> None:
    with pytest.raises(ValueError, match=r"train has T=3 rows but period=3; need T > period"):
        seasonal_naive_scale(np.ones((3, 1)), 3)
    periodic = np.tile([[1.0, 0.0], [2.0, 1.0]], (3, 1))  # column 0 repeats every 2 rows
    periodic[:, 1] = np.arange(6)
    with pytest.raises(ValueError, match=r"train column\(s\) \[0\] are constant at period=2"):
        seasonal_naive_scale(periodic, 2)
    with pytest.raises(ValueError, match=r"period must be >= 1, got 0"):
        seasonal_naive_scale(np.ones((3, 1)), 0)
    with pytest.raises(ValueError, match=r"train contains 1 NaN/inf value\(s\)"):
        seasonal_naive_scale([[1.0], [np.nan], [2.0]], 1)


def test_mase_scale_broadcasting() -> None:
    y_true = np.zeros((2, 3, 2))
    y_pred = np.ones((2, 3, 2)) * np.array([2.0, 6.0])  # |e| = 2 in col 0, 6 in col 1
    assert mase(y_true, y_pred, 2.0) == pytest.approx(mae(y_true, y_pred) / 2.0)
    assert mase(y_true, y_pred, [2.0, 3.0]) == pytest.approx((1.0 + 2.0) / 2)
    per_window = np.array([[[1.0, 3.0]], [[2.0, 6.0]]])  # [N=2, 1, C=2]
    assert mase(y_true, y_pred, per_window) == pytest.approx((2 + 2 + 1 + 1) / 4)


def test_mase_scale_errors() -> None:
    y = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match=r"scale has shape \(3,\), which does not broadcast to"):
        mase(y, y, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"scale is 0 for column\(s\) \[1\]: the training series"):
        mase(y, y, [1.0, 0.0])
    with pytest.raises(ValueError, match=r"scale has 1 negative value\(s\)"):
        mase(y, y, np.array([[[1.0, 1.0]], [[-1.0, 1.0]]]))


def test_shape_and_nan_errors() -> None:
    with pytest.raises(
        ValueError, match=r"y_true has shape \(2, 2, 1\) but y_pred has shape \(2, 2\)"
    ):
        mae(Y_TRUE, Y_PRED[..., 0])
    with pytest.raises(ValueError, match=r"must have shape \[N, H, C\] \(3 dims\), got \(4,\)"):
        mse(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"are empty \(shape \(0, 2, 1\)\)"):
        mae(np.ones((0, 2, 1)), np.ones((0, 2, 1)))
    bad = Y_PRED.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"y_pred contains 1 NaN/inf value\(s\)"):
        smape(Y_TRUE, bad)
    with pytest.raises(ValueError, match=r"y_true contains 1 NaN/inf value\(s\)"):
        mape(bad, Y_PRED)


def test_per_horizon_consistent_with_overall() -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.normal(size=(8, 5, 3)), rng.normal(size=(8, 5, 3))
    steps = per_horizon("mse", y_true, y_pred)
    assert steps.shape == (5,)
    assert steps.mean() == pytest.approx(mse(y_true, y_pred))
    assert steps[2] == pytest.approx(mse(y_true[:, 2:3], y_pred[:, 2:3]))
    scale = rng.uniform(0.5, 2.0, size=(8, 1, 3))
    mase_steps = per_horizon("mase", y_true, y_pred, scale=scale)
    assert mase_steps.mean() == pytest.approx(mase(y_true, y_pred, scale))


def test_compute_metrics() -> None:
    out = compute_metrics(Y_TRUE, Y_PRED)
    assert list(out) == ["mae", "mse", "rmse", "mape", "smape"]
    assert out["mae"] == pytest.approx(7 / 4)
    with_mase = compute_metrics(Y_TRUE, Y_PRED, mase_scale=0.5)
    assert with_mase["mase"] == pytest.approx(7 / 2)
    assert compute_metrics(Y_TRUE, Y_PRED, names=["rmse"]) == {"rmse": rmse(Y_TRUE, Y_PRED)}


def test_unknown_metric_and_missing_scale() -> None:
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['r2'\]; known metrics: \['mae'"):
        compute_metrics(Y_TRUE, Y_PRED, names=["mae", "r2"])
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['r2'\]"):
        per_horizon("r2", Y_TRUE, Y_PRED)
    with pytest.raises(ValueError, match=r"metric 'mase' needs a scale"):
        compute_metrics(Y_TRUE, Y_PRED, names=["mase"])


def test_per_horizon_table() -> None:
    table = per_horizon_table(Y_TRUE, Y_PRED, mase_scale=[2.0])
    assert list(table.columns) == ["step", "mae", "mse", "rmse", "mape", "smape", "mase"]
    assert table["step"].tolist() == [1, 2]
    np.testing.assert_allclose(table["mae"], [(1 + 0) / 2, (2 + 4) / 2])
    np.testing.assert_allclose(table["mase"], table["mae"] / 2.0)
    assert "mase" not in per_horizon_table(Y_TRUE, Y_PRED).columns
