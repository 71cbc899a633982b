"""Forecasts past the end of the data, saved pipelines and the predict command.

Every registered model: `forecast(frame truncated at T)` equals the test path's
prediction for the window whose origin is T (original units), with the real timestamps
T+1..T+H, for one series and for three series in long format; a run folder's saved
pipeline reproduces its test predictions bitwise in a fresh process; crafted or damaged
files are refused; the command line forecasts a CSV the run has never seen.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import forecast
import run_experiment
from forecast import ColumnRoles, create_model, list_models, prepare_data
from forecast.checkpoint import CheckpointError, atomic_save, read_checkpoint
from forecast.evaluate import predict_dataset
from forecast.params import param_names
from forecast.pipeline import Pipeline, artifact_path
from tests.conftest import one_error_line

ROOT = Path(__file__).resolve().parents[1]
L, H = 24, 6
TINY_TRAIN = {
    "epochs": 1,
    "max_train_windows": 64,
    "max_val_windows": 16,
    "batch_size": 32,
    "progress": False,
    "device": "cpu",
}
TINY_NET = {
    "hidden_size": 8,
    "d_model": 16,
    "n_heads": 2,
    "d_ff": 32,
    "encoder_layers": 1,
    "pretrain_epochs": 1,
}


def _tiny(name: str, layout) -> forecast.models.base.Forecaster:
    """`name` with the smallest budget its config takes."""
    from forecast.models.registry import get_entry

    fields = set(param_names(get_entry(name).cls.Config))
    params = {k: v for k, v in {**TINY_TRAIN, **TINY_NET}.items() if k in fields}
    return create_model(name, layout, **params)


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Hourly: target y, past covariate x, known covariate k."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": 10 + np.sin(t / 4) + rng.normal(0, 0.1, n),
            "x": rng.normal(size=n),
            "k": np.cos(t / 7),
        }
    )


ROLES = ColumnRoles(("y",), ("x",), ("k",), calendar=True)


def _panel() -> pd.DataFrame:
    """Three series of different lengths and levels, long format."""
    parts = [
        _frame(260 + 20 * i, seed=i).assign(id=f"s{i}", y=lambda d, i=i: d["y"] * (i + 1) + 5 * i)
        for i in range(3)
    ]
    return pd.concat(parts, ignore_index=True)[["id", "date", "y", "x", "k"]]


@pytest.fixture(scope="module")
def single(one_thread):
    df = _frame()
    data = prepare_data(df, ROLES, input_length=L, horizon=H)
    return df, data


@pytest.fixture(scope="module")
def panel(one_thread):
    df = _panel()
    roles = dataclasses.replace(ROLES, series_id="id")
    data = prepare_data(df, roles, input_length=L, horizon=H)
    return df, roles, data


def _check_forecast_matches_test_path(pipe, data, df, windows, series_col=None):
    """forecast() of the frame truncated at each window's origin == the test path."""
    preds = predict_dataset(pipe.model, data.test)
    original = data.to_original(preds.prediction, data.test)
    truncated, expected, stamps = [], [], []
    for w in windows:
        s, origin = int(data.test.series_index[w]), int(preds.origin[w])
        lo = int(data.frame.bounds[s])
        sid = data.frame.series_ids[s]
        rows = df if series_col is None else df[df[series_col] == sid]
        truncated.append(rows.iloc[: origin - lo + 1])
        expected.append(original[w])
        stamps.append(rows["date"].iloc[origin - lo + 1 : origin - lo + 1 + H].to_numpy())
    # series in reverse order: forecasts follow the frame, scaling follows the series id
    frame = pd.concat(truncated[::-1], ignore_index=True)
    out = pipe.forecast(frame, future=df)
    assert len(out) == H * len(windows)
    targets = list(data.layout.targets)
    cols = ([series_col] if series_col else []) + ["time", *targets]
    assert list(out.columns) == cols
    for b, (want, when) in enumerate(zip(expected[::-1], stamps[::-1])):
        block = out.iloc[b * H : (b + 1) * H]
        np.testing.assert_allclose(block[targets].to_numpy(), want, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(block["time"].to_numpy(), when)
    return out


@pytest.mark.parametrize("name", list_models())
def test_forecast_of_a_truncated_frame_is_the_test_path_prediction(name, single, panel):
    df, data = single
    model = _tiny(name, data.layout).fit(data.train, data.val)
    pipe = Pipeline.from_bundle(model, data, ROLES)
    assert pipe.roles.calendar  # resolved at training ('hour'), rebuilt for the future
    n = len(data.test)
    _check_forecast_matches_test_path(pipe, data, df, [0])
    _check_forecast_matches_test_path(pipe, data, df, [n - 1])
    # three series in long format: one block per series
    pdf, roles, pdata = panel
    model = _tiny(name, pdata.layout).fit(pdata.train, pdata.val)
    pipe = Pipeline.from_bundle(model, pdata, roles)
    last = [int(np.flatnonzero(pdata.test.series_index == s)[-1]) for s in range(3)]
    out = _check_forecast_matches_test_path(pipe, pdata, pdf, last, series_col="id")
    assert out["id"].tolist() == [s for s in ("s2", "s1", "s0") for _ in range(H)]


def test_per_series_scaling_needs_the_training_series(panel):
    pdf, roles, pdata = panel
    pipe = Pipeline.from_bundle(create_model("naive", pdata.layout), pdata, roles)
    renamed = pdf.assign(id=pdf["id"].replace({"s1": "new"}))
    with pytest.raises(ValueError, match=r"series \['new'\] were not in the training data"):
        pipe.forecast(renamed, future=renamed)


def test_predict_windows_is_what_evaluate_scores(single):
    df, data = single
    model = create_model("linear", data.layout).fit(data.train, data.val)
    pipe = Pipeline.from_bundle(model, data, ROLES)
    table = pipe.predict_windows(df)
    assert len(table) == (len(df) - L - H + 1) * H
    preds = predict_dataset(model, data.test)
    original = data.to_original(preds.prediction, data.test)
    origin_time = data.frame.timestamps[preds.origin]
    mine = table[table["origin_time"].isin(origin_time)]
    np.testing.assert_allclose(mine["prediction"].to_numpy(), original.reshape(-1), atol=1e-9)
    np.testing.assert_allclose(
        mine["actual"].to_numpy(), df["y"].to_numpy()[data.test.target_rows()].reshape(-1),
        rtol=1e-6,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted_linear(single):
    df, data = single
    model = create_model("linear", data.layout).fit(data.train, data.val)
    return df, Pipeline.from_bundle(model, data, ROLES, columns=list(df.columns))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.iloc[:10], "has 10 rows, shorter than the input length = 24"),
        (lambda d: d.drop(columns="x"), r"lacks column\(s\) \['x'\]"),
        (lambda d: d.assign(z=1.0), r"has column\(s\) \['z'\] that the training data did not"),
        (lambda d: d.iloc[::-1], "timestamps are not sorted"),
        (lambda d: d.assign(date=range(len(d))), "does not hold dates"),
    ],
)
def test_bad_frames_get_one_clear_line(fitted_linear, change, message):
    df, pipe = fitted_linear
    with pytest.raises(ValueError, match=message):
        pipe.forecast(change(df), future=df)


def test_missing_future_covariate_names_the_timestamps(fitted_linear):
    df, pipe = fitted_linear
    history = df.iloc[:300]
    with pytest.raises(ValueError, match=r"known covariate\(s\) \['k'\] are needed"):
        pipe.forecast(history)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['k'\]"):
        pipe.forecast(history, future=df[["date"]])
    with pytest.raises(ValueError, match="lacks 2 of the 6 timestamps to forecast: 2024-01-13 "):
        pipe.forecast(history, future=df.iloc[:304])
    out = pipe.forecast(history, future=df.iloc[300:306])
    assert out["time"].iloc[0] == df["date"].iloc[300]


def test_saved_pipeline_round_trip_and_refusals(fitted_linear, tmp_path):
    df, pipe = fitted_linear
    path = pipe.save(tmp_path / "linear.pt")
    again = forecast.load(path)
    history = df.iloc[:300]
    pd.testing.assert_frame_equal(
        again.forecast(history, future=df), pipe.forecast(history, future=df), check_exact=True
    )
    assert again.roles == pipe.roles and again.columns == pipe.columns
    payload = read_checkpoint(path)
    crafted = atomic_save({**payload, "class": "os:system"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a registered torch model or baseline") as err:
        forecast.load(crafted)
    assert str(crafted) in str(err.value)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt"):
        forecast.load(tmp_path / "flipped.pt")


# ------------------------------------------------------------------ a run folder
def _run_args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "csv", "--data-path", str(data), "--targets", "y",
        "--covariates", "x", "--known-covariates", "k", "--calendar", "hour",
        "--input-length", str(L), "--horizon", str(H), "--models", "lstm_plain", "linear",
        "--seeds", "0", "--no-progress", "--quiet", "--set", "run.plots=false",
        "--set", "train.epochs=1", "--set", "train.max_train_windows=64",
        "--set", "lstm_plain.hidden_size=4", "--set", "run.threads=1",
        "--output-dir", str(tmp_path / "runs"), "--run-name", "r", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("run")
    _frame(500).to_csv(tmp / "train.csv", index=False)
    assert run_experiment.main(_run_args(tmp, tmp / "train.csv")) == 0
    return tmp / "runs" / "r"


FRESH = """
import sys
import numpy as np
import forecast
from forecast.evaluate import predict_dataset
from forecast.io import read_csv
frame = read_csv(sys.argv[1])
for model, results in zip(sys.argv[2::2], sys.argv[3::2]):
    pipe = forecast.load(model)
    bundle = pipe.prepare(frame)
    with np.load(results) as z:
        stored, origin_time = z["prediction"], z["origin_time"]
    keep = np.isin(bundle.frame.timestamps[bundle.test.origin_rows()], origin_time)
    pred = predict_dataset(pipe.model, bundle.test.subset(np.flatnonzero(keep))).prediction
    same = pred.shape == stored.shape and pred.dtype == stored.dtype and (pred == stored).all()
    print(pipe.model.name, same)
"""


def test_saved_models_reproduce_the_test_predictions_bitwise_in_a_fresh_process(run_dir, tmp_path):
    names = ["lstm_plain", "linear", "naive"]
    args = [str(run_dir.parent.parent / "train.csv")]
    for name in names:
        assert artifact_path(run_dir, name, 0).is_file()
        args += [str(artifact_path(run_dir, name, 0)), str(run_dir / f"results/{name}/seed0.npz")]
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.stdout.split() == [w for n in names for w in (n, "True")], out.stdout + out.stderr


def test_predict_command_on_a_csv_the_run_has_never_seen(run_dir, tmp_path, capsys):
    new = _frame(200, seed=7)
    new["date"] = pd.date_range("2025-03-01", periods=200, freq="h")
    history, future = new.iloc[:150], new.iloc[150:160][["date", "k"]]
    history.to_csv(tmp_path / "new.csv", index=False)
    future.to_csv(tmp_path / "future.csv", index=False)
    out = tmp_path / "forecasts.csv"
    args = ["predict", "--run", str(run_dir), "--model", "lstm_plain"]
    args += ["--data", str(tmp_path / "new.csv"), "--future", str(tmp_path / "future.csv")]
    assert run_experiment.main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out, parse_dates=["time"])
    assert list(table.columns) == ["time", "y"] and len(table) == H
    assert (table["time"] == future["date"].iloc[:H].to_numpy()).all()
    pipe = forecast.load(artifact_path(run_dir, "lstm_plain", 0))
    expected = pipe.forecast(history, future=future)
    np.testing.assert_allclose(table["y"].to_numpy(), expected["y"].to_numpy(), rtol=1e-6)
    # an existing output is never overwritten
    assert run_experiment.main([*args, "--out", str(out)]) == 2
    assert "exists" in one_error_line(capsys)


def test_predict_command_errors(run_dir, tmp_path, capsys):
    new = _frame(100, seed=3)
    new.to_csv(tmp_path / "new.csv", index=False)
    new.iloc[:10].to_csv(tmp_path / "short.csv", index=False)
    new.drop(columns="x").to_csv(tmp_path / "cols.csv", index=False)
    out = str(tmp_path / "f.csv")
    base = ["predict", "--run", str(run_dir), "--model", "linear", "--out", out]
    cases = [
        ([*base, "--data", str(tmp_path / "new.csv")], "known covariate(s) ['k'] are needed"),
        ([*base, "--data", str(tmp_path / "short.csv")], "shorter than the input length"),
        ([*base, "--data", str(tmp_path / "cols.csv")], "lacks column(s) ['x']"),
        (
            ["predict", "--run", str(run_dir), "--model", "lstmm", "--data", "x.csv", "--out", out],
            "has no saved model 'lstmm'",
        ),
        ([*base, "--seed", "3", "--data", str(tmp_path / "new.csv")], "has no seed 3"),
        (
            [
                "predict",
                "--run",
                str(tmp_path / "nope"),
                "--model",
                "linear",
                "--data",
                "x.csv",
                "--out",
                out,
            ],
            "no run folder",
        ),  # fmt: skip
    ]
    for args, message in cases:
        assert run_experiment.main(args) == 2, args
        assert message in one_error_line(capsys)
    assert not Path(out).exists()


def test_step_index_and_datetime_index_frames():
    n = 200
    steps = pd.DataFrame({"t": np.arange(0, 2 * n, 2), "y": np.sin(np.arange(n) / 3)})
    roles = ColumnRoles(("y",), time_column="t")
    data = prepare_data(steps, roles, input_length=L, horizon=H)
    pipe = Pipeline.from_bundle(create_model("nlinear", data.layout).fit(data.train), data, roles)
    out = pipe.forecast(steps)
    assert out["time"].tolist() == list(range(2 * n, 2 * n + 2 * H, 2))
    indexed = _frame(200).set_index("date")
    roles = ColumnRoles(("y",), ("x",), calendar=("hour",), time_column=None)
    data = prepare_data(indexed[["y", "x"]], roles, input_length=L, horizon=H)
    pipe = Pipeline.from_bundle(create_model("linear", data.layout).fit(data.train), data, roles)
    out = pipe.forecast(indexed[["y", "x"]])
    assert out["time"].iloc[0] == indexed.index[-1] + pd.Timedelta(hours=1)


def test_predict_help_does_not_import_torch():
    code = (
        "import contextlib, io, sys; import run_experiment\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: run_experiment.main(['predict', '--help'])\n"
        "    except SystemExit as e: code = e.code\n"
        "print(code, 'torch' in sys.modules, '--future' in out.getvalue())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.stdout.split() == ["0", "False", "True"], out.stdout + out.stderr


def test_parquet_output_needs_pyarrow(run_dir, tmp_path, capsys):
    _frame(100).to_csv(tmp_path / "new.csv", index=False)
    _frame(110).to_csv(tmp_path / "future.csv", index=False)
    args = ["predict", "--run", str(run_dir), "--model", "naive", "--data"]
    args += [str(tmp_path / "new.csv"), "--future", str(tmp_path / "future.csv")]
    out = tmp_path / "f.parquet"
    code = run_experiment.main([*args, "--out", str(out)])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert code == 2 and "writing Parquet needs pyarrow" in one_error_line(capsys)
        return
    assert code == 0 and len(pd.read_parquet(out)) == H


def test_forecast_intervals_bracket_the_forecast_and_cover_what_follows(one_thread):
    """80 % bounds from the frame's own recent windows: they bracket the point forecast,
    and over 120 later origins of an AR(1) series (forecast from the history up to each
    origin, scored against what followed) they cover 80 % of the values, +- 8 points."""
    rng = np.random.default_rng(3)
    n = 1200
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.8 * y[t - 1] + rng.normal()
    df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})
    roles = ColumnRoles(("y",), calendar=False)
    data = prepare_data(df, roles, input_length=L, horizon=H)
    pipe = Pipeline.from_bundle(create_model("linear", data.layout).fit(data.train), data, roles)
    hits = []
    for origin in range(n - H - 120 * 2, n - H, 2):
        out = pipe.forecast(df.iloc[: origin + 1], coverage=0.8, calibration_windows=300)
        assert list(out.columns) == ["time", "y", "y_lower", "y_upper"]
        assert (out["y_lower"] < out["y"]).all() and (out["y"] < out["y_upper"]).all()
        actual = y[origin + 1 : origin + 1 + H]
        hits.append((out["y_lower"].to_numpy() <= actual) & (actual <= out["y_upper"].to_numpy()))
    coverage = float(np.mean(hits))
    assert 0.72 <= coverage <= 0.88, coverage


def test_forecast_intervals_need_a_complete_window(fitted_linear):
    df, pipe = fitted_linear
    with pytest.raises(ValueError, match="input length \\+ horizon"):
        pipe.forecast(df.iloc[: L + 2], future=df, coverage=0.8)
    with pytest.raises(ValueError, match="calibration_windows"):
        pipe.forecast(df.iloc[:-H], future=df, coverage=0.8, calibration_windows=0)


def test_predict_command_adds_bounds_with_coverage(run_dir, tmp_path, capsys):
    new = _frame(200, seed=8)
    new["date"] = pd.date_range("2025-03-01", periods=200, freq="h")
    new.iloc[:150].to_csv(tmp_path / "new.csv", index=False)
    new.iloc[150:160][["date", "k"]].to_csv(tmp_path / "future.csv", index=False)
    args = ["predict", "--run", str(run_dir), "--model", "linear", "--data"]
    args += [str(tmp_path / "new.csv"), "--future", str(tmp_path / "future.csv")]
    out = tmp_path / "bounds.csv"
    assert run_experiment.main([*args, "--out", str(out), "--coverage", "0.8"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["time", "y", "y_lower", "y_upper"]
    assert ((table["y_lower"] < table["y"]) & (table["y"] < table["y_upper"])).all()
    bad = tmp_path / "bad.csv"
    assert run_experiment.main([*args, "--out", str(bad), "--coverage", "1.5"]) == 2
    assert "(0, 1)" in one_error_line(capsys) and not bad.exists()
