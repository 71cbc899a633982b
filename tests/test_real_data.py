"""Real files in: duplicate rows, gaps, integer time steps, track M, and the command-line
data options (fill, gaps, freq, borders / timestamps splits)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_experiment
from forecast.data.frame import STEP, ColumnRoles, prepare_frame
from forecast.data.prepare import prepare_data
from forecast.data.protocols import dataset_bundle
from forecast.data.registry import DatasetSpec, get_dataset_spec
from forecast.data.split import SplitSpec, part_starts

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather.csv"
ROLES = ColumnRoles(("y",), ("x",), calendar=False)


def _messy(n: int = 400) -> pd.DataFrame:
    """10-minute rows with row 101 an exact copy of row 100 and 9 rows missing after 300."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "date": pd.date_range("2020-01-01", periods=n, freq="10min"),
            "y": np.sin(np.arange(n) / 9) + rng.normal(0, 0.1, n),
            "x": rng.normal(size=n),
        }
    )
    df = df.drop(index=range(301, 310))
    return pd.concat([df.iloc[:101], df.iloc[[100]], df.iloc[101:]], ignore_index=True)


# ------------------------------------------------------------------ frame and split
def test_duplicate_row_is_an_error_that_names_the_option():
    with pytest.raises(
        ValueError, match=r"rows 100 and 101 are identical .* \(--drop-duplicates\)"
    ):
        prepare_frame(_messy(), ROLES)


def test_gap_is_an_error_that_names_the_options():
    with pytest.raises(
        ValueError, match=r"gap in the '10min' frequency: row 302 .*\(9 missing .*--gaps keep"
    ):
        prepare_frame(_messy(), ROLES, drop_duplicates=True)


def test_drop_duplicates_and_keep_gaps():
    frame = prepare_frame(_messy(), ROLES, drop_duplicates=True, gaps="keep")
    assert len(frame.values) == 391  # 400 - 9 missing; the copy dropped
    assert frame.freq == "10min"
    assert (np.diff(frame.timestamps) > np.timedelta64(0)).all()


def test_fill_gaps_inserts_the_missing_rows():
    frame = prepare_frame(_messy(), ROLES, drop_duplicates=True, gaps="fill", fill="ffill")
    assert len(frame.values) == 400
    expected = pd.date_range("2020-01-01", periods=400, freq="10min")
    assert (pd.DatetimeIndex(frame.timestamps) == expected).all()
    assert (frame.values[301:310] == frame.values[300]).all()  # forward-filled
    with pytest.raises(ValueError, match=r"gaps='fill' needs fill= \(--fill\)"):
        prepare_frame(_messy(), ROLES, drop_duplicates=True, gaps="fill")


def test_repeated_timestamp_with_other_values_stays_an_error():
    df = _messy()
    df.loc[101, "y"] += 1.0
    with pytest.raises(
        ValueError, match=r"duplicate timestamp 2020-01-01 16:40:00 at rows 100 and 101, with"
    ):
        prepare_frame(df, ROLES, drop_duplicates=True, gaps="keep")


@pytest.mark.parametrize("n_rows", [52696, 52695])
def test_fraction_split_is_the_autoformer_arithmetic(n_rows):
    """num_train = int(0.7 N), num_test = int(0.2 N), val the rest; test windows start L
    rows before the test part: 10,444 at L = 336, H = 96 for weather's 52,696 (or 52,695)."""
    borders = SplitSpec("fractions", fractions=(0.7, 0.1, 0.2)).borders_for(n_rows)
    assert borders[0] == int(0.7 * n_rows)
    assert borders[2] - borders[1] == int(0.2 * n_rows) == 10539
    starts = part_starts(borders, "test", 336, 96)
    assert len(starts) == 10444
    assert starts[0] == borders[1] - 336 and starts[-1] + 336 + 96 == n_rows


def test_weather_registry_rule():
    spec = get_dataset_spec("weather")
    assert spec.drop_duplicate_rows is True and spec.gaps == "keep"
    assert spec.split_spec() == SplitSpec("fractions", fractions=(0.7, 0.1, 0.2))
    assert get_dataset_spec("ETTh1").drop_duplicate_rows is False


def test_registry_rejects_a_bad_cleaning_rule(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "datasets" / "weather.toml").read_text()
    path = tmp_path / "w.toml"
    path.write_text(text.replace('gaps = "keep"', 'gaps = "fill"'))
    with pytest.raises(ValueError, match=r"w.toml: gaps must be one of \['error', 'keep'\]"):
        DatasetSpec.from_toml(path)
    path.write_text(text.replace("drop_duplicate_rows = true", 'drop_duplicate_rows = "yes"'))
    with pytest.raises(ValueError, match="drop_duplicate_rows must be true or false"):
        DatasetSpec.from_toml(path)


# ------------------------------------------------------------------ integer time steps
def _steps(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"t": np.arange(n), "y": np.sin(np.arange(n) / 4) + rng.normal(0, 0.1, n)})


def test_integer_time_column_is_a_step_index():
    roles = ColumnRoles(("y",), time_column="t")  # calendar=True: none for steps
    bundle = prepare_data(_steps(), roles, input_length=24, horizon=6)
    assert bundle.frame.freq == STEP and bundle.layout.period == 1
    assert bundle.frame.calendar_columns == []
    assert bundle.frame.timestamps.dtype == np.int64
    assert np.isfinite(bundle.mase_scale()).all()
    split = SplitSpec("timestamps", timestamps=("200", "250"))
    assert prepare_data(_steps(), roles, input_length=24, horizon=6, split=split).borders == [
        (200, 250, 300)
    ]


def test_integer_time_column_gaps_and_options():
    roles = ColumnRoles(("y",), time_column="t")
    gappy = _steps().drop(index=[100, 101]).reset_index(drop=True)
    with pytest.raises(ValueError, match=r"gap in the 'step' frequency: row 100 is 102"):
        prepare_frame(gappy, roles)
    assert len(prepare_frame(gappy, roles, gaps="fill", fill="interpolate").values) == 300
    with pytest.raises(ValueError, match=r"holds integers \(a step index\), so freq="):
        prepare_frame(_steps(), roles, freq="h")
    with pytest.raises(ValueError, match=r"calendar features \['hour'\] need dates"):
        prepare_frame(_steps(), ColumnRoles(("y",), time_column="t", calendar=["hour"]))


# ------------------------------------------------------------------ command line
def _cli(tmp_path: Path, csv: Path, *extra: str) -> int:
    return run_experiment.main(
        [
            "--dataset",
            "csv",
            "--data-path",
            str(csv),
            "--models",
            "naive",
            "--seeds",
            "0",
            "--input-length",
            "24",
            "--horizon",
            "6",
            "--period",
            "6",
            "--output-dir",
            str(tmp_path / "runs"),
            "--run-name",
            "r",
            "--no-progress",
            "--quiet",
            "--set",
            "run.workers=1",
            "--set",
            "run.plots=false",
            "--set",
            "run.checkpoints=false",
            *extra,
        ]
    )


def _resolved(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["data"]


def test_cli_messy_file_fails_naming_the_option_then_loads_with_it(tmp_path, capsys):
    csv = tmp_path / "messy.csv"
    _messy().to_csv(csv, index=False)
    assert _cli(tmp_path, csv, "--targets", "y") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: rows 100 and 101 are identical") and "--drop-duplicates" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    args = ("--targets", "y", "--drop-duplicates", "--gaps", "keep")
    assert _cli(tmp_path, csv, *args, "--split", "borders", "--borders", "250", "300") == 0
    data = _resolved(tmp_path)
    assert data["rows"] == [391] and data["split_borders"] == [[250, 300, 391]]
    assert data["cleaning"] == {"gaps": "keep", "drop_duplicates": True, "fill": None}


def test_cli_fill_gaps_and_timestamp_split(tmp_path):
    csv = tmp_path / "messy.csv"
    _messy().to_csv(csv, index=False)
    args = ["--targets", "y", "--drop-duplicates", "--gaps", "fill", "--fill", "ffill"]
    args += ["--freq", "10min", "--split", "timestamps"]
    args += ["--split-at", "2020-01-02 12:00", "2020-01-02 20:00"]
    assert _cli(tmp_path, csv, *args) == 0
    data = _resolved(tmp_path)
    assert data["rows"] == [400] and data["freq"] == "10min"
    assert data["split_borders"] == [[216, 264, 400]]


def test_cli_targets_all_is_track_m(tmp_path):
    csv = tmp_path / "wide.csv"
    df = _messy().drop_duplicates().iloc[:300]
    df["label"] = "a"  # not numeric: never a target
    df["z (µmol/m²)"] = df["x"] * 2  # a name that is hard to type
    df.to_csv(csv, index=False)
    assert _cli(tmp_path, csv, "--targets", "all") == 0
    layout = _resolved(tmp_path)["layout"]
    assert layout["targets"] == ["y", "x", "z (µmol/m²)"]
    assert layout["past_covariates"] == []
    # named covariates are inputs only, never targets
    assert _cli(tmp_path, csv, "--targets", "all", "--covariates", "x", "--run-name", "r2") == 0
    layout = json.loads((tmp_path / "runs" / "r2" / "config.json").read_text())["data"]["layout"]
    assert layout["targets"] == ["y", "z (µmol/m²)"] and layout["past_covariates"] == ["x"]


def test_cli_integer_time_steps(tmp_path):
    csv = tmp_path / "steps.csv"
    _steps().to_csv(csv, index=False)
    assert _cli(tmp_path, csv, "--targets", "y", "--time-column", "t", "--period", "12") == 0
    data = _resolved(tmp_path)
    assert data["freq"] == "step" and data["layout"]["period"] == 12
    assert data["layout"]["known_covariates"] == []  # no calendar from steps
    metrics = pd.read_csv(tmp_path / "runs" / "r" / "leaderboard.csv")
    assert np.isfinite(metrics["mase"]).all() and (metrics["mase"] < 10).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calendar", "hour"], "calendar features ['hour'] need dates"),
        (["--set", "backtest.folds=2"], "backtest.folds needs dates in the time column"),
        (["--freq", "h"], "holds integers (a step index), so freq= (--freq) does not apply"),
    ],
)
def test_cli_integer_time_steps_bad_option_leaves_no_folder(tmp_path, capsys, extra, message):
    csv = tmp_path / "steps.csv"
    _steps().to_csv(csv, index=False)
    assert _cli(tmp_path, csv, "--targets", "y", "--time-column", "t", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "borders"], "data.split 'borders' needs data.borders (--borders)"),
        (["--split", "borders", "--borders", "300", "200"], "2 or 3 increasing row indices"),
        (["--borders", "200", "300"], "only used with data.split = 'borders'"),
        (["--split", "timestamps", "--split-at", "x", "y"], "must be timestamps"),
        (["--gaps", "fill"], "data.gaps 'fill' needs data.fill (--fill)"),
        (["--freq", "fortnight"], "data.freq 'fortnight' is not a pandas frequency alias"),
        (["--period", "0"], "data.period must be positive, got 0"),
        (["--set", "data.fill=mean"], "data.fill must be one of"),
        (["--set", "data.targets=some"], "data.targets must be a list of columns or 'all'"),
    ],
)
def test_cli_bad_data_options(tmp_path, capsys, extra, message):
    csv = tmp_path / "x.csv"
    _steps(50).to_csv(csv, index=False)
    assert _cli(tmp_path, csv, "--targets", "y", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ weather, as published
@pytest.mark.slow
@pytest.mark.skipif(not WEATHER.exists(), reason=f"benchmark file not found at {WEATHER}")
def test_weather_reproduces_the_published_protocol():
    """The literature's weather protocol through the config path a run takes (registry
    cleaning rule, 70/10/20 rows, targets 'all'): 10,444 test windows and the published
    Repeat MSE 0.259 (M, L = 336, H = 96). The full run (with nlinear) is in
    datasets/README.md."""
    from forecast.config import load_config
    from forecast.data.source import load_source, make_bundle
    from forecast.evaluate import predict_dataset, score
    from forecast.models.registry import create_model

    overrides = ["data.dataset=weather", f"data.data_path={WEATHER}", "data.targets=all"]
    overrides += ["data.input_length=336", "data.horizon=96", "models=['naive']"]
    cfg = load_config(None, overrides)
    df, roles, split, _ = load_source(cfg.data)
    bundle = make_bundle(cfg, df, roles, split)
    assert len(bundle.frame.values) == 52695 and len(bundle.frame.targets) == 21
    assert len(bundle.test) == 10444
    naive = create_model("naive", bundle.layout)
    naive.fit(bundle.train, bundle.val)
    result = score(predict_dataset(naive, bundle.test), bundle, bundle.test)
    assert round(result["mse"], 3) == 0.259


# ------------------------------------------------------------------ accuracy suite protocol
def _registered_like(name: str, n_rows: int) -> pd.DataFrame:
    """A generated frame with the columns, frequency and row count of a registered file."""
    spec = get_dataset_spec(name)
    rng = np.random.default_rng(0)
    times = pd.date_range("2020-01-01", periods=n_rows, freq=spec.freq)
    values = rng.normal(size=(n_rows, len(spec.columns))).astype(np.float32)
    df = pd.DataFrame(values, columns=list(spec.columns))
    df.insert(0, spec.time_column, times)
    return df


@pytest.mark.parametrize(
    ("name", "n_rows", "test_windows"),
    [("ETTh1", 17420, 2785), ("ETTm1", 69680, 11425), ("weather", 52696, 10444)],
)
def test_dataset_bundle_follows_each_registry_protocol(name, n_rows, test_windows):
    """ETTm files get the x4 Informer borders (not ETTh1's), weather its 70/10/20 rows."""
    df = _registered_like(name, n_rows)
    if name == "weather":  # as published: 9 timestamps missing, then one row repeated
        df = _registered_like(name, n_rows + 8).drop(index=range(21514, 21523))
        df = pd.concat([df.iloc[:19044], df.iloc[[19043]], df.iloc[19044:]], ignore_index=True)
        assert len(df) == n_rows
    bundle = dataset_bundle(name, df, "M", 336, 96)
    assert len(bundle.test) == test_windows


def test_accuracy_suite_runs_ettm1_on_its_own_borders(tmp_path, monkeypatch, capsys):
    """bench/accuracy_suite.py on an ETTm1-shaped file: 11,425 test windows at L336/H96
    (not ETTh1's 2,785), results and references kept per dataset."""
    path = Path(__file__).resolve().parents[1] / "bench" / "accuracy_suite.py"
    module_spec = importlib.util.spec_from_file_location("accuracy_suite", path)
    suite = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(suite)
    csv = tmp_path / "ETTm1.csv"
    _registered_like("ETTm1", 69680).to_csv(csv, index=False)
    out = tmp_path / "suite"
    argv = ["accuracy_suite.py", "--dataset", "ettm1", "--data-path", str(csv), "--tracks", "U"]
    argv += ["--inputs", "336", "--horizons", "96", "--models", "naive", "--seeds", "0"]
    argv += ["--threads", "1", "--quiet", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    suite.main()
    (line,) = suite.read_lines(out.with_suffix(".jsonl"))
    assert line["dataset"] == "ETTm1" and line["test_windows"] == 11425
    assert line["key"].startswith("ETTm1|U|336|96|naive|0|")
    printed = capsys.readouterr().out
    assert "ETTm1 track U, input 336, horizon 96" in printed
    assert "[published] NLinear" in printed


def test_accuracy_suite_model_defaults_keep_each_models_training_settings():
    """`--model-defaults` trains a neural model with its own epochs, patience, batch and
    full validation set; without it the suite's shared settings apply."""
    path = Path(__file__).resolve().parents[1] / "bench" / "accuracy_suite.py"
    module_spec = importlib.util.spec_from_file_location("accuracy_suite", path)
    suite = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(suite)
    args = suite.argparse.Namespace(
        set=["segrnn.lr=0.01"], epochs=10, quick=False, model_defaults=False
    )
    shared = suite.model_params("segrnn", 1, args)
    assert shared["batch_size"] == 32 and shared["epochs"] == 10 and shared["lr"] == 0.01
    args.model_defaults = True
    own = suite.model_params("segrnn", 1, args)
    assert own == {"progress": False, "device": "cpu", "seed": 1, "lr": 0.01}
