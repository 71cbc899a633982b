"""The runner end to end on small data, and its command line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import run_experiment
from forecast.experiment import ExperimentConfig, run


def _quick(tmp_path, **kw) -> ExperimentConfig:
    base = dict(
        synthetic_rows=1200,
        input_length=48,
        horizon=12,
        models=["naive", "linear"],
        output_dir=str(tmp_path),
        run_name="r",
        progress=False,
    )
    return ExperimentConfig(**{**base, **kw})


def test_run_writes_a_complete_folder(tmp_path):
    result = run(_quick(tmp_path))
    folder = result.run_dir
    for rel in [
        "config.json",
        "metrics.json",
        "leaderboard.csv",
        "leaderboard.md",
        "per_horizon.csv",
        "predictions/naive.csv",
        "plots/forecasts.png",
        "plots/forecasts.csv",
        "plots/horizon_mse.png",
    ]:
        assert (folder / rel).is_file(), rel
    board = pd.read_csv(folder / "leaderboard.csv")
    assert set(board["model"]) >= {"naive", "seasonal_naive", "mean", "drift", "linear", "nlinear"}
    assert board["mse"].is_monotonic_increasing
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["truth"]["lag"] == 12
    preds = pd.read_csv(folder / "predictions/naive.csv", parse_dates=["time", "origin_time"])
    assert (preds["time"] > preds["origin_time"]).all()
    assert not list(folder.rglob("*.tmp"))


def test_existing_run_folder_is_never_reused(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("keep")
    result = run(_quick(tmp_path))
    assert result.run_dir.name == "r-1"
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep"


def test_bad_model_params_fail_before_the_folder_is_made(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alhpa'\]"):
        run(_quick(tmp_path, model_params={"linear": {"alhpa": 1}}))
    with pytest.raises(ValueError, match="unknown model 'lstmm'"):
        run(_quick(tmp_path, models=["lstmm"]))
    assert not list(tmp_path.iterdir())


def test_csv_dataset_with_series_id(tmp_path):
    from forecast.data.synthetic import make_panel_dataset

    df, _ = make_panel_dataset(n_series=2, n_rows=400, seed=1)
    path = tmp_path / "panel.csv"
    df.to_csv(path, index=False)
    result = run(
        _quick(
            tmp_path / "runs",
            dataset="csv",
            data_path=str(path),
            targets=["target"],
            series_id="series_id",
        )
    )
    preds = pd.read_csv(result.run_dir / "predictions/naive.csv")
    assert set(preds["series"]) == {"s0", "s1"}


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        run_experiment.main(["--help"])
    text = capsys.readouterr().out
    for option in [
        "--dataset",
        "--data-path",
        "--targets",
        "--input-length",
        "--horizon",
        "--split",
        "--scaling",
        "--models",
        "--set",
        "--seeds",
        "--device",
        "--output-dir",
        "--list-models",
        "--list-datasets",
    ]:
        assert option in text


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    code = run_experiment.main(["--horizon", "0", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "error: horizon must be positive, got 0" in capsys.readouterr().err


def test_cli_set_parsing():
    assert run_experiment.parse_overrides(["linear.alpha=10", "lstm.attention=bahdanau"]) == {
        "linear": {"alpha": 10},
        "lstm": {"attention": "bahdanau"},
    }
    with pytest.raises(ValueError, match="--set expects MODEL.PARAM=VALUE"):
        run_experiment.parse_overrides(["alpha=10"])


def test_cli_list_models(capsys):
    assert run_experiment.main(["--list-models"]) == 0
    assert "seasonal_naive" in capsys.readouterr().out
