"""Which models a run holds: a seasonal baseline that cannot run is caught before training.

`seasonal_naive` repeats the last season of the input window, so it needs input_length >=
its period (96 rows on 15-minute data). Named in `models` (or given a period), a shorter
input is a config error at validation and `--check`; added only as a baseline, it is left
out of the run with a warning.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

import run_experiment
from forecast.config import ConfigError, config_from_dict, model_names
from forecast.experiment import run

PERIOD_15MIN = "input_length 48 < period 96 (one season of the data's '15min' rows)"


def _quarter_hour_csv(tmp_path) -> str:
    n = 1600
    t = np.arange(n)
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="15min"),
            "y": np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.1, n),
        }
    )
    path = tmp_path / "quarter.csv"
    df.to_csv(path, index=False)
    return str(path)


def _raw(tmp_path, models, **data) -> dict:
    return {
        "models": models,
        "data": {"input_length": 48, "horizon": 8, **data},
        "run": {"output_dir": str(tmp_path / "runs"), "name": "r", "progress": False},
    }


def test_named_seasonal_naive_is_a_config_error_for_a_registered_dataset(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_from_dict(_raw(tmp_path, ["seasonal_naive"], dataset="ETTm1"))
    message = str(err.value)
    assert message.startswith("model 'seasonal_naive' needs data.input_length >= its period")
    assert PERIOD_15MIN in message and "\n" not in message


def test_added_seasonal_naive_is_left_out_for_a_registered_dataset(tmp_path):
    cfg = config_from_dict(_raw(tmp_path, ["naive", "linear"], dataset="ETTm1"))
    names = model_names(cfg)
    assert "seasonal_naive" not in names and {"naive", "linear", "mean"} <= set(names)
    long_enough = config_from_dict({**_raw(tmp_path, ["naive"], dataset="ETTh1")})
    assert "seasonal_naive" in model_names(long_enough)  # 48 >= 24 on hourly data


def test_an_explicit_period_longer_than_the_input_is_a_config_error(tmp_path):
    raw = {**_raw(tmp_path, ["naive"]), "model": {"seasonal_naive": {"period": 100}}}
    with pytest.raises(ConfigError, match=r"input_length 48 < period 100 \(\[model.seasonal"):
        config_from_dict(raw)


def test_csv_run_leaves_out_the_added_baseline_with_a_warning(tmp_path, caplog):
    cfg = config_from_dict(
        _raw(
            tmp_path, ["naive"], dataset="csv", targets=["y"], data_path=_quarter_hour_csv(tmp_path)
        )
    )
    assert "seasonal_naive" in model_names(cfg)  # the CSV's frequency is not known yet
    with caplog.at_level(logging.WARNING):
        result = run(cfg)
    assert "seasonal_naive" not in set(result.leaderboard["model"])
    assert {"naive", "mean", "drift"} <= set(result.leaderboard["model"])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("seasonal_naive left out of this run" in m and PERIOD_15MIN in m for m in warned)
    stored = json.loads((result.run_dir / "config.json").read_text())["config"]
    assert "seasonal_naive" not in stored["models"]


def test_csv_run_naming_seasonal_naive_stops_before_a_run_folder(tmp_path):
    cfg = config_from_dict(
        _raw(
            tmp_path,
            ["seasonal_naive"],
            dataset="csv",
            targets=["y"],
            data_path=_quarter_hour_csv(tmp_path),
        )
    )
    with pytest.raises(ConfigError, match=PERIOD_15MIN.replace("(", r"\(").replace(")", r"\)")):
        run(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_check_catches_a_named_seasonal_naive(capsys):
    argv = ["--check", "--dataset", "ETTm1", "--input-length", "48", "--horizon", "24"]
    assert run_experiment.main([*argv, "--models", "seasonal_naive", "naive"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'seasonal_naive' needs data.input_length")
    assert PERIOD_15MIN in err and "Traceback" not in err and err.count("\n") == 1
    assert run_experiment.main([*argv, "--models", "naive"]) == 0  # added only: left out


def test_cli_run_naming_seasonal_naive_on_a_csv_exits_2(tmp_path, capsys):
    argv = [
        *("--dataset", "csv", "--data-path", _quarter_hour_csv(tmp_path), "--targets", "y"),
        *("--input-length", "48", "--horizon", "8", "--models", "seasonal_naive"),
        *("--output-dir", str(tmp_path / "runs"), "--no-progress"),
    ]
    assert run_experiment.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'seasonal_naive'") and PERIOD_15MIN in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
