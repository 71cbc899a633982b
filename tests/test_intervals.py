"""Calibrated intervals and quantile heads: coverage on fixed seeds, metrics, plumbing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import create_model, metrics
from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.config import DataConfig, ExperimentConfig, RunConfig
from forecast.data.frame import ColumnRoles
from forecast.data.prepare import prepare_data
from forecast.data.synthetic import make_driver_dataset, make_panel_dataset
from forecast.evaluate import Predictions, predict_dataset
from forecast.experiment import resume, run
from forecast.intervals import (
    ConformalIntervals,
    QuantileCalibration,
    calibrate,
    conformal_quantile,
    conformal_quantiles,
    interval_scores,
    quantile_levels,
    quantiles_to_original,
)
from forecast.plots import forecast_plot

FAST_LSTM = {"epochs": 8, "progress": False, "device": "cpu", "seed": 0}


@pytest.fixture(scope="module")
def synthetic(one_thread):
    syn = make_driver_dataset(3000, seed=0)
    roles = ColumnRoles((syn.target,), syn.covariates)
    return prepare_data(syn.frame, roles, input_length=36, horizon=12)


def _coverage(model, data, level=0.8):
    cal = calibrate(model, data.val, coverages=(level,))
    test = predict_dataset(model, data.test)
    q = cal.quantiles(test, data.test)
    return metrics.probabilistic_metrics(test.target, q, cal.levels)[f"coverage_{level:.0%}"[:-1]]


def test_pinball_of_the_median_is_half_the_mae():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(50, 6, 2)), rng.normal(size=(50, 6, 2))
    pinball = metrics.pinball_loss(y, p[..., None], [0.5])
    assert pinball == pytest.approx(metrics.mae(y, p) / 2, rel=1e-12)
    assert metrics.crps_from_quantiles(y, p[..., None], [0.5]) == pytest.approx(metrics.mae(y, p))
    table = metrics.probabilistic_per_horizon(y, np.stack([p - 1, p, p + 1], -1), [0.1, 0.5, 0.9])
    assert list(table["step"]) == list(range(1, 7)) and "coverage_80" in table


def test_conformal_quantile_has_the_finite_sample_correction():
    scores = np.arange(1.0, 10.0)  # n = 9
    assert conformal_quantile(scores, 0.8) == 8.0  # ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(scores, 0.5) == 5.0
    assert np.isinf(conformal_quantile(scores, 0.95))  # ceil(9.5) = 10 > 9: too few
    assert quantile_levels([0.5, 0.8, 0.9]) == (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    with pytest.raises(ValueError, match=r"coverage levels must lie in \(0, 1\), got 1.5"):
        quantile_levels([1.5])


def test_static_conformal_covers_exchangeable_residuals(synthetic):
    """iid residuals: the validation quantile covers new windows at the nominal rate."""
    rng = np.random.default_rng(1)
    val, test = synthetic.val, synthetic.test

    def preds(ds, n):
        y = rng.standard_normal((n, 12, 1))
        return Predictions(np.zeros_like(y), y, ds.series_index, ds.starts + 35)

    cal = ConformalIntervals.calibrate(
        preds(val, len(val)), val, coverages=(0.5, 0.8, 0.9), method="absolute", rolling=False
    )
    out = preds(test, len(test))
    found = metrics.probabilistic_metrics(out.target, cal.quantiles(out, test), cal.levels)
    for level in (50, 80, 90):
        assert abs(found[f"coverage_{level}"] - level / 100) < 0.03, found


@pytest.mark.parametrize("name", ["naive", "linear", "lstm"])
def test_conformal_80_covers_the_synthetic_test_windows(synthetic, name):
    model = create_model(name, synthetic.layout, **(FAST_LSTM if name == "lstm" else {}))
    model.fit(synthetic.train, synthetic.val)
    assert 0.77 <= _coverage(model, synthetic) <= 0.83


def test_quantile_head_is_calibrated_and_its_median_is_the_point_forecast(synthetic, tmp_path):
    params = {**FAST_LSTM, "quantiles": [0.1, 0.5, 0.9]}  # a list, as from a config file
    model = create_model("lstm", synthetic.layout, **params).fit(synthetic.train, synthetic.val)
    assert model.config.train.quantiles == (0.1, 0.5, 0.9)
    test = predict_dataset(model, synthetic.test)
    assert test.quantiles.shape == (*test.prediction.shape, 3)
    np.testing.assert_array_equal(test.quantiles[..., 1], test.prediction)
    assert (np.diff(test.quantiles, axis=-1) >= 0).all()  # never crossing
    cal = calibrate(model, synthetic.val)
    assert isinstance(cal, QuantileCalibration)
    q = cal.quantiles(test, synthetic.test)
    assert abs(metrics.coverage(test.target, q[..., 0], q[..., 2]) - 0.8) <= 0.05
    # original units keep the order; a reloaded checkpoint gives the same quantiles
    assert (np.diff(quantiles_to_original(q, synthetic, synthetic.test), axis=-1) >= 0).all()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "q.pt"))
    np.testing.assert_array_equal(predict_dataset(loaded, synthetic.test).quantiles, test.quantiles)


def _trained(model, net, batch) -> set[str]:
    """Names of the parameters that one loss on `batch` gives a gradient."""
    model.loss(net(batch, teacher_forcing=0.0), batch).backward()
    return {n for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["lstm", "transformer", "dlinear"])
def test_quantile_head_trains_the_head_and_the_same_network_parameters(synthetic, name):
    batch = next(synthetic.train.iter_batches(8))
    torch.manual_seed(0)
    point = create_model(name, synthetic.layout, device="cpu")
    plain = _trained(point, point.make_network(), batch)
    model = create_model(name, synthetic.layout, quantiles=(0.25, 0.5, 0.75), device="cpu")
    net = model.make_network()
    assert net(batch, teacher_forcing=0.0).quantiles.shape == (8, 12, 1, 3)
    trained = _trained(model, net, batch)
    head = {n for n, _ in net.named_parameters() if n.startswith("mlp.")}
    assert head and head <= trained
    assert {n.removeprefix("inner.") for n in trained - head} == plain


def test_bad_quantile_levels_are_refused(synthetic):
    with pytest.raises(ValueError, match=r"quantiles must include 0.5 \(the point forecast\)"):
        create_model("lstm", synthetic.layout, quantiles=(0.1, 0.9))
    with pytest.raises(ValueError, match="quantiles must be distinct, ascending, in"):
        create_model("lstm", synthetic.layout, quantiles=(0.9, 0.5, 0.1))


def test_forecast_plot_draws_a_band():
    times = pd.date_range("2024-01-01", periods=40, freq="h")
    frame = pd.DataFrame(
        {
            "series": "",
            "origin_time": times[29],
            "step": np.arange(1, 11),
            "time": times[30:],
            "target": "y",
            "actual": 1.0,
            "prediction": 1.0,
            "lower": 0.5,
            "upper": 1.5,
        }
    )
    fig, data = forecast_plot({"m": frame}, "y", origins=np.array([times[29]]))
    assert len(fig.axes[0].collections) == 1  # the band
    assert {"lower", "upper"} <= set(data.columns)


def test_runner_scores_intervals_and_resume_keeps_them(tmp_path):
    data = DataConfig(synthetic_rows=1200, input_length=48, horizon=12)
    run_cfg = RunConfig(output_dir=str(tmp_path), name="r", progress=False, threads=1, plots=True)
    cfg = ExperimentConfig(models=["naive", "linear"], data=data, run=run_cfg)
    result = run(cfg)
    board = pd.read_csv(result.run_dir / "leaderboard.csv")
    for col in ("coverage_80", "width_80", "pinball", "crps"):
        assert board[col].notna().all(), col
    assert (board["coverage_80"].between(0.6, 0.95)).all()
    horizon = pd.read_csv(result.run_dir / "per_horizon.csv")
    assert horizon["coverage_80"].notna().all()
    assert "Prediction intervals" in (result.run_dir / "report.md").read_text()
    plotted = pd.read_csv(result.run_dir / "plots/forecasts.csv")
    bands = plotted.dropna(subset=["lower", "upper"])  # every forecast drawn with its band
    assert len(bands) == (plotted["kind"] == "forecast").sum() > 0
    assert (bands["lower"] <= bands["value"]).all() and (bands["value"] <= bands["upper"]).all()
    again = pd.read_csv(resume(result.run_dir).run_dir / "leaderboard.csv")
    pd.testing.assert_frame_equal(board, again)


def test_conformal_80_covers_etth1_track_u(etth1_path, one_thread):
    from forecast.data.protocols import ett_bundle

    data = ett_bundle(pd.read_csv(etth1_path), "U", 96, 24)
    for name in ("naive", "linear"):
        model = create_model(name, data.layout).fit(data.train, data.val)
        assert 0.77 <= _coverage(model, data) <= 0.83, name


def test_rolling_calibration_is_per_series_on_a_panel(one_thread):
    frame, _ = make_panel_dataset(3, [1200, 900, 1500], seed=0)
    covariates = tuple(c for c in frame.columns if c.startswith("x"))
    roles = ColumnRoles(("target",), covariates, series_id="series_id", time_column="date")
    data = prepare_data(frame, roles, input_length=36, horizon=12)
    for name in ("naive", "linear"):
        model = create_model(name, data.layout).fit(data.train, data.val)
        assert 0.77 <= _coverage(model, data) <= 0.83, name


def test_a_series_with_too_few_known_windows_gets_the_pooled_radius(synthetic):
    """Rolling calibration of a series with 3 validation windows: a 90 % radius needs 9,
    so its first block uses the radius pooled over every series instead of infinity."""
    rng = np.random.default_rng(2)
    val, test = synthetic.val, synthetic.test
    y = rng.standard_normal((len(val), 12, 1))
    series = np.r_[np.zeros(len(val) - 3, int), np.ones(3, int)]
    origin = val.starts + 35
    cal_preds = Predictions(np.zeros_like(y), y, series, origin)
    cal = ConformalIntervals.calibrate(cal_preds, val, coverages=(0.9,), method="absolute")
    new = Predictions(np.zeros((4, 12, 1)), np.ones((4, 12, 1)), np.ones(4, int), origin[-4:] + 100)
    radii = cal.radii(new, test.subset(np.arange(4)))
    np.testing.assert_array_equal(radii[0], np.broadcast_to(cal.radius[0], (4, 12, 1)))


def test_widths_and_quantile_losses_in_original_units_are_the_scaled_ones_times_std(synthetic):
    """One series, one target: original = scaled * std + mean, so widths and pinball /
    CRPS (differences) scale by std exactly; WQL is normalised by |y| and is not."""
    model = create_model("naive", synthetic.layout)
    test = predict_dataset(model, synthetic.test)
    scores = interval_scores(model, synthetic, test, coverages=(0.5, 0.8))
    std = float(synthetic.scaler.std_[0, 0])
    assert std != pytest.approx(1.0)
    row = scores.metrics
    for key in ("width_50", "width_80", "pinball", "crps"):
        assert row[f"orig_{key}"] == pytest.approx(row[key] * std, rel=1e-9), key
    assert "orig_wql" in row and "orig_coverage_80" not in row  # coverage has no unit


def test_interval_levels_come_from_the_run_config(tmp_path):
    data = DataConfig(synthetic_rows=900, input_length=24, horizon=6)
    run_cfg = RunConfig(
        output_dir=str(tmp_path), name="r", progress=False, threads=1, plots=False,
        checkpoints=False, interval_levels=[0.6, 0.95],
    )  # fmt: skip
    result = run(ExperimentConfig(models=["naive"], data=data, run=run_cfg))
    board = pd.read_csv(result.run_dir / "leaderboard.csv")
    got = [c for c in board if c.startswith(("coverage_", "width_", "orig_width_"))]
    assert got == [
        "coverage_60", "width_60", "orig_width_60", "coverage_95", "width_95", "orig_width_95",
    ]  # fmt: skip
    assert board["coverage_95"].iloc[0] > board["coverage_60"].iloc[0]
    assert {"orig_pinball", "orig_wql", "orig_crps"} <= set(board.columns)
    stored = json.loads((result.run_dir / "config.json").read_text())
    assert stored["config"]["run"]["interval_levels"] == [0.6, 0.95]
    per_seed = json.loads((result.run_dir / "metrics.json").read_text())
    assert "orig_width_95" in json.dumps(per_seed)
    report = (result.run_dir / "report.md").read_text()
    assert "coverage 60%" in report and "width 95% (original units)" in report
    assert "crps (original units)" in report


@pytest.mark.parametrize("n", [0, 1, 4, 9, 57, 400])
def test_conformal_quantiles_equal_one_partition_per_level(n: int) -> None:
    scores = np.random.default_rng(n).exponential(size=(n, 6, 2))
    levels = (0.5, 0.8, 0.9, 0.99)
    expected = np.stack([conformal_quantile(scores, c) for c in levels])
    np.testing.assert_array_equal(conformal_quantiles(scores, levels), expected)
