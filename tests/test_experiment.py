"""The runner end to end on small data, and its command line."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import run_experiment
from forecast.config import (
    BacktestConfig,
    DataConfig,
    ExperimentConfig,
    RunConfig,
)
from forecast.evaluate import load_predictions
from forecast.experiment import run
from forecast.runner import SAMPLE_WINDOWS
from forecast.runs import RunFolder

TINY_NEURAL = {"epochs": 1, "max_train_windows": 64, "max_val_windows": 32, "batch_size": 32}


def _quick(tmp_path, models=("naive", "linear"), plots=False, **sections) -> ExperimentConfig:
    data = DataConfig(synthetic_rows=1200, input_length=48, horizon=12)
    run_cfg = RunConfig(output_dir=str(tmp_path), name="r", progress=False, threads=1, plots=plots)
    return ExperimentConfig(models=list(models), data=data, run=run_cfg, **sections)


def test_run_writes_a_complete_folder(tmp_path):
    cfg = _quick(tmp_path, ("lstm_plain", "linear"), plots=True, train=dict(TINY_NEURAL))
    result = run(cfg)
    folder = result.run_dir
    for rel in [
        "config.json",
        "environment.json",
        "metrics.json",
        "leaderboard.csv",
        "leaderboard.md",
        "significance.csv",
        "per_horizon.csv",
        "predictions/naive_sample.csv",
        "results/naive/seed0.json",
        "results/naive/seed0.npz",
        "plots/forecasts.png",
        "plots/forecasts.csv",
        "plots/horizon_mse.png",
        "plots/leaderboard.png",
        "plots/history.png",
        "history/lstm_plain_seed0.csv",
        "models/lstm_plain_seed0.pt",
        "models/linear_seed0.pt",
        "models/naive_seed0.pt",
        "report.md",
        "report.html",
    ]:
        assert (folder / rel).is_file(), rel
    board = pd.read_csv(folder / "leaderboard.csv")
    assert set(board["model"]) >= {"naive", "seasonal_naive", "mean", "drift", "linear", "nlinear"}
    assert board["mse"].is_monotonic_increasing
    assert {"rmse", "smape", "mase", "skill_vs_naive", "dm_stat", "dm_p_value"} <= set(board)
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["truth"]["lag"] == 12
    env = json.loads((folder / "environment.json").read_text())
    assert env["seeds"] == [0] and env["packages"]["numpy"] and "device" in env
    assert env["threads"]["requested"] == 1 and env["threads"]["threads"] == env["torch_threads"]
    assert env["threads"]["policy"] and env["threads"]["cores"] >= 1
    row = json.loads((folder / "results/naive/seed0.json").read_text())
    assert row["predict_seconds"] >= 0 and row["fit_seconds"] >= 0  # the end-to-end share
    preds = pd.read_csv(
        folder / "predictions/naive_sample.csv",
        parse_dates=["time", "origin_time"],
        keep_default_na=False,  # the one series' id is ''
        dtype={"series": str},
    )
    assert (preds["time"] > preds["origin_time"]).all()
    assert preds["origin_time"].nunique() == SAMPLE_WINDOWS
    full = load_predictions(folder / "results/naive/seed0.npz")  # every window, original units
    assert len(full) == len(result.bundle.test) * 12
    pd.testing.assert_frame_equal(full.head(len(preds)), preds, check_dtype=False)
    assert not (folder / "predictions/naive.csv").exists()  # run.predictions = 'npz'
    assert not list(folder.rglob("*.tmp"))
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table" in html and 'src="plots/' not in html


def test_existing_run_folder_is_never_reused(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("keep")
    folder = RunFolder(tmp_path, "r")
    assert folder.path.name == "r-1" and RunFolder(tmp_path, "r").path.name == "r-2"
    folder.write_text("mine.txt", "new")
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep"
    umask = os.umask(0)
    os.umask(umask)
    assert (folder.path / "mine.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not 0o600


def test_bad_model_params_fail_before_the_folder_is_made(tmp_path):
    unknown = r"unknown key\(s\) \['alhpa'\] in section \[model.linear\]"
    with pytest.raises(ValueError, match=unknown):
        run(_quick(tmp_path, model={"linear": {"alhpa": 1}}))
    with pytest.raises(ValueError, match="unknown model 'lstmm'"):
        run(_quick(tmp_path, models=["lstmm"]))
    assert not list(tmp_path.iterdir())


def test_csv_dataset_with_series_id(tmp_path):
    from forecast.data.synthetic import make_panel_dataset

    df, _ = make_panel_dataset(n_series=2, n_rows=400, seed=1)
    path = tmp_path / "panel.csv"
    df.to_csv(path, index=False)
    cfg = _quick(tmp_path / "runs")
    cfg.data = DataConfig(
        dataset="csv",
        data_path=str(path),
        targets=["target"],
        series_id="series_id",
        input_length=48,
        horizon=12,
    )
    cfg.run.predictions = "csv"
    result = run(cfg)
    preds = pd.read_csv(result.run_dir / "predictions/naive.csv")
    assert set(preds["series"]) == {"s0", "s1"}
    assert len(preds) == len(result.bundle.test) * 12  # every window
    full = load_predictions(result.run_dir / "results/naive/seed0.npz")
    pd.testing.assert_frame_equal(
        full.drop(columns=["origin_time", "time"]),
        preds.drop(columns=["origin_time", "time"]),
        check_dtype=False,
        rtol=1e-6,
    )
    # one DM loss value per origin time, averaged over the two series
    sig = pd.read_csv(result.run_dir / "significance.csv")
    assert sig["dm_n"].max() == len(result.bundle.test) // 2


def test_same_config_and_seed_reproduce_the_metrics_exactly(tmp_path):
    cfg = _quick(tmp_path, models=("lstm_plain", "linear"), train=dict(TINY_NEURAL))
    cfg.model = {"lstm_plain": {"hidden_size": 8}}
    cfg.run.seeds = [0, 1]
    a = run(cfg)
    b = run(cfg)
    assert a.run_dir != b.run_dir
    cols = ["model", "seed", "mse", "mae", "rmse", "smape", "mase", "orig_mse"]
    pd.testing.assert_frame_equal(a.per_seed[cols], b.per_seed[cols], check_exact=True)
    neural = a.per_seed[a.per_seed["model"] == "lstm_plain"]
    assert neural["mse"].nunique() == 2  # the seed is used: two seeds, two results
    assert (a.run_dir / "models/lstm_plain_seed1.pt").is_file()
    assert not (a.run_dir / "plots").exists()  # run.plots = false
    row = a.leaderboard.set_index("model").loc["lstm_plain"]
    assert row["n_seeds"] == 2 and row["mse_std"] > 0


def test_backtest_without_and_with_refit(tmp_path):
    models = ("naive", "linear")
    once = run(_quick(tmp_path, models, backtest=BacktestConfig(folds=3, refit=False)))
    refit = run(_quick(tmp_path, models, backtest=BacktestConfig(folds=3, refit=True)))
    a, b = once.backtest.set_index(["model", "fold"]), refit.backtest.set_index(["model", "fold"])
    assert len(a) == len(b) == 3 * len(once.leaderboard)
    # fold 0 with refitting trains on exactly the main run's training rows
    assert a.loc[("linear", 0), "mse"] == pytest.approx(b.loc[("linear", 0), "mse"], rel=1e-9)
    # later folds train on more data, so the fitted model differs
    assert a.loc[("linear", 2), "mse"] != b.loc[("linear", 2), "mse"]
    # repeat-last-value does not learn: refitting changes only the scaling
    assert a.loc[("naive", 2), "orig_mse"] == pytest.approx(b.loc[("naive", 2), "orig_mse"])
    assert (refit.run_dir / "results/linear/seed0_fold2.json").is_file()
    report = (refit.run_dir / "report.md").read_text()
    assert "Rolling-origin backtest (retrained per fold)" in report


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        run_experiment.main(["--help"])
    text = capsys.readouterr().out
    for option in [
        "--config",
        "--resume",
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
        "--no-progress",
        "--list-models",
        "--list-datasets",
        "data.horizon=48",
        "lstm.attention=luong_dot",
    ]:
        assert option in text


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    code = run_experiment.main(["--horizon", "0", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "error: data.horizon must be positive, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_runs_a_config_file_with_overrides(tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text(
        'models = ["linear"]\n[data]\nsynthetic_rows = 1000\ninput_length = 48\nhorizon = 12\n'
        '[run]\noutput_dir = "out"\nname = "cli"\nprogress = false\nplots = false\n'
    )
    code = run_experiment.main(
        ["--config", str(config), "--set", "data.horizon=6", "--set", "linear.alpha=10"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "run folder:" in out and "dm_p_value" in out
    resolved = json.loads((tmp_path / "out/cli/config.json").read_text())  # relative to file
    assert resolved["config"]["data"]["horizon"] == 6
    assert resolved["model_params"]["linear"]["alpha"] == 10


def test_cli_check_prints_the_resolved_config(capsys):
    assert run_experiment.main(["--check", "--set", "data.horizon=48", "--seeds", "3", "4"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["data"]["horizon"] == 48 and cfg["run"]["seeds"] == [3, 4]
    assert cfg["data"]["dataset"] == "synthetic"  # configs/quick.toml is the default


def test_cli_list_models(capsys):
    assert run_experiment.main(["--list-models"]) == 0
    assert "seasonal_naive" in capsys.readouterr().out


def test_interpretation_is_written_for_each_neural_model(tmp_path):
    from forecast.config import InterpretConfig

    cfg = _quick(
        tmp_path,
        ("lstm_luong", "linear"),
        train=dict(TINY_NEURAL),
        interpret=InterpretConfig(max_windows=32, n_repeats=2, ig_steps=4, ig_windows=8),
    )
    cfg.run.interpret = True
    result = run(cfg)
    summary = result.run_dir / "interpret/lstm_luong/summary.md"
    assert summary.is_file() and "Ground truth" in summary.read_text()  # synthetic truth
    best = result.leaderboard["model"].iloc[0]
    baselines = set(result.leaderboard.query("kind == 'baseline'")["model"])
    interpreted = {p.name for p in (result.run_dir / "interpret").iterdir()}
    assert interpreted == {"lstm_luong"} | ({best} & baselines)  # a baseline only if best
    assert "interpret/lstm_luong/summary.md" in (result.run_dir / "report.md").read_text()


def test_interpretation_explains_a_baseline_that_is_the_best_model(tmp_path):
    from forecast.config import InterpretConfig

    cfg = _quick(tmp_path, ("naive",), interpret=InterpretConfig(max_windows=32, n_repeats=2))
    cfg.run.interpret = True
    result = run(cfg)
    best = result.leaderboard["model"].iloc[0]
    folder = result.run_dir / f"interpret/{best}"
    assert (folder / "permutation_features.png").is_file()  # model-agnostic sections
    assert not list(folder.glob("attention*")) and not list(folder.glob("gradients*"))
    assert f"interpret/{best}/summary.md" in (result.run_dir / "report.md").read_text()


def test_interpretation_asked_for_but_unavailable_warns(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "forecast.interpret", None)  # import fails
    cfg = _quick(tmp_path)
    cfg.run.interpret = True
    with caplog.at_level("WARNING"):
        result = run(cfg)
    assert "run.interpret is true but forecast.interpret cannot be imported" in caplog.text
    assert (result.run_dir / "leaderboard.csv").is_file()


def test_predictions_none_writes_no_prediction_files_but_keeps_plots(tmp_path, capsys):
    args = ["--synthetic-rows", "1200", "--input-length", "48", "--horizon", "12"]
    args += ["--models", "naive", "--output-dir", str(tmp_path), "--run-name", "r"]
    args += ["--predictions", "none", "--no-progress", "--quiet"]
    assert run_experiment.main(args) == 0
    folder = tmp_path / "r"
    assert not (folder / "predictions").exists()
    assert (folder / "plots/forecasts.png").is_file()  # drawn from the arrays in memory
    assert (folder / "results/naive/seed0.npz").is_file()  # resume and DM need it
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit, before any run
        run_experiment.main([*args[:-4], "--predictions", "parquet"])
    assert exit_.value.code == 2
    assert "invalid choice: 'parquet'" in capsys.readouterr().err


def test_reports_escape_names_label_units_and_format_p_values_alike(tmp_path):
    from forecast.data.synthetic import make_driver_dataset

    syn = make_driver_dataset(1200, seed=0)
    path = tmp_path / "data.csv"
    syn.frame.rename(columns={syn.target: "<i>load</i>"}).to_csv(path, index=False)
    cfg = _quick(tmp_path / "runs")
    cfg.data = DataConfig(
        dataset="csv", data_path=str(path), targets=["<i>load</i>"], input_length=48, horizon=12
    )
    folder = run(cfg).run_dir
    for name in ("leaderboard.md", "report.md"):
        text = (folder / name).read_text()
        assert "<i>" not in text and "&lt;i&gt;load&lt;/i&gt;" in text, name
        assert "mse (scaled)" in text and "mse (original units)" in text, name
    board = pd.read_csv(folder / "leaderboard.csv")
    assert board["mse_std"].isna().all()  # one seed: no spread, blank
    sig = pd.read_csv(folder / "significance.csv").dropna(subset=["dm_p_value"])
    html = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    for p in sig["dm_p_value"]:
        shown = f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"
        assert f">{shown}<" in html and f"| {shown} |" in md
    assert (sig["dm_p_value"] < 1e-4).any()  # the case that read 0.0000 in the HTML
