"""Config files and overrides: typed sections, clear errors before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

import run_experiment
from forecast.config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    config_from_dict,
    config_to_dict,
    load_config,
    model_names,
    model_params,
)
from forecast.config_checks import check_type
from forecast.models.registry import list_models
from tests.conftest import one_error_line

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_ready_config_validates(path):
    cfg = load_config(path)
    assert set(list_models("baseline")) <= set(model_names(cfg))
    assert config_from_dict(config_to_dict(cfg)) == cfg  # round trip through plain data


def test_ready_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"quick", "etth1_u", "etth1_ms", "synthetic_truth"}


def test_etth1_u_is_the_literature_protocol(monkeypatch):
    monkeypatch.delenv("FORECAST_DATA_ETTH1", raising=False)
    cfg = load_config(CONFIGS[[p.stem for p in CONFIGS].index("etth1_u")])
    d = cfg.data
    assert (d.dataset, d.targets, d.covariates, d.calendar, d.scaling) == (
        "ETTh1",
        ["OT"],
        "none",
        False,
        "global",
    )
    assert (d.input_length, d.horizon, cfg.evaluation.stride) == (96, 24, 1)
    assert len(cfg.run.seeds) == 3 and cfg.models == ["all"]
    assert d.data_path == str(Path(__file__).resolve().parents[2] / "shared/data/ETTh1.csv")


def test_env_var_wins_over_a_config_files_data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECAST_DATA_ETTH1", "/data/ETTh1.csv")
    path = _write(tmp_path, '[data]\ndataset = "ETTh1"\ndata_path = "x/ETTh1.csv"\n')
    assert load_config(path).data.data_path == "/data/ETTh1.csv"
    monkeypatch.delenv("FORECAST_DATA_ETTH1")
    assert load_config(path).data.data_path == str(tmp_path / "x/ETTh1.csv")


def test_unknown_keys_name_the_key_the_section_and_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['horizn'\] in section \[data\]; "):
        load_config(_write(tmp_path, "[data]\nhorizn = 24\n"))
    with pytest.raises(ConfigError, match=r"valid keys: \[.*'horizon'.*\]"):
        load_config(_write(tmp_path, "[data]\nhorizn = 24\n"))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) or key\(s\) \['dataa'\]"):
        load_config(_write(tmp_path, "[dataa]\nhorizon = 24\n"))
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['hiden_size'\] in section \[model.lstm\]"
    ):
        load_config(_write(tmp_path, "[model.lstm]\nhiden_size = 24\n"))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\] in section \[train\]"):
        load_config(_write(tmp_path, "[train]\nepoch = 3\n"))
    with pytest.raises(ConfigError, match=r"\[model.lstmm\] names no registered model"):
        load_config(_write(tmp_path, "[model.lstmm]\nhidden_size = 24\n"))


def test_wrong_types_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[data\] horizon must be of type int, got str '24'"):
        load_config(_write(tmp_path, '[data]\nhorizon = "24"\n'))
    with pytest.raises(ConfigError, match=r"\[run\] seeds must be of type list\[int\], got int 0"):
        load_config(_write(tmp_path, "[run]\nseeds = 0\n"))
    with pytest.raises(ConfigError, match=r"\[model.lstm\] hidden_size must be of type int"):
        load_config(_write(tmp_path, "[model.lstm]\nhidden_size = 3.5\n"))
    with pytest.raises(ConfigError, match=r"\[train\] epochs must be of type int, got bool"):
        load_config(_write(tmp_path, "[train]\nepochs = true\n"))


@pytest.mark.parametrize(
    "item, message",
    [
        ("data.horizon=0", "data.horizon must be positive, got 0"),
        ("data.input_length=-5", "data.input_length must be positive, got -5"),
        ("evaluation.stride=0", "evaluation.stride must be positive, got 0"),
        ("run.seeds=[]", "run.seeds must name at least one seed, got []"),
        ("run.seeds=[1,1]", "run.seeds must not repeat a seed, got [1, 1]"),
        ("data.scaling=minmax", "data.scaling must be one of ['per_series', 'global', 'none']"),
        ("backtest.folds=1", "backtest.folds must be 0 (off) or at least 2, got 1"),
        ("run.predictions=parquet", "run.predictions must be one of ['npz', 'csv', 'none']"),
        ("data.fractions=[0.7,0.3,0.2]", "data.fractions must be three non-negative numbers"),
        (
            "lstm.teacher_forcing=1.5",
            "[model.lstm]: teacher-forcing start must be in [0, 1], got 1.5",
        ),
        (
            "train.teacher_forcing=1.5",
            "[train] for model 'darnn': teacher-forcing start must be in [0, 1], got 1.5",
        ),
        ("lstm.attention=luong_dott", "unknown attention 'luong_dott'"),
        ("train.lr=0", "lr must be > 0, got 0"),
        ("lstm.dropout=1.0", "dropout must be in [0, 1), got 1.0"),
        ("train.seed=3", "[train] sets ['seed'], which are run-wide: use run.seeds"),
        ("models=['lstmm']", "models: unknown model 'lstmm'"),
    ],
)
def test_impossible_values_fail_before_any_training(item, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[item])
    assert message in str(err.value)


def test_overrides_set_sections_models_and_model_params():
    cfg = load_config(
        overrides=[
            "data.horizon=48",
            "run.seeds=[0, 1]",
            "train.epochs=2",
            "lstm.attention=luong_dot",
            "model.darnn.hidden_size=16",
            "models=['lstm', 'darnn']",
            "data.targets=['y']",
            "data.dataset=csv",
            "data.data_path=my.csv",
        ]
    )
    assert cfg.data.horizon == 48 and cfg.run.seeds == [0, 1] and cfg.data.targets == ["y"]
    assert cfg.model == {"lstm": {"attention": "luong_dot"}, "darnn": {"hidden_size": 16}}
    params = model_params(cfg, "lstm", seed=1)
    assert params["epochs"] == 2 and params["seed"] == 1 and params["attention"] == "luong_dot"
    assert "epochs" not in model_params(cfg, "linear", seed=1)  # [train] is for neural models
    assert model_names(cfg)[:2] == ["lstm", "darnn"]


def test_override_errors():
    with pytest.raises(ConfigError, match="--set expects SECTION.KEY=VALUE"):
        apply_override({}, "horizon")
    with pytest.raises(ConfigError, match="'dat' is neither a section"):
        apply_override({}, "dat.horizon=3")
    with pytest.raises(ConfigError, match="expected data.KEY=VALUE"):
        apply_override({}, "data.a.b=3")


def test_cli_set_keeps_model_param_semantics(tmp_path, capsys):
    code = run_experiment.main(["--check", "--set", "linear.alpha=10", "--set", "data.horizon=6"])
    assert code == 0
    out = capsys.readouterr().out
    assert '"alpha": 10' in out and '"horizon": 6' in out


def test_resume_refuses_other_options(tmp_path, capsys):
    code = run_experiment.main(["--resume", str(tmp_path), "--horizon", "3"])
    assert code == 2
    assert "--resume takes the run folder alone" in capsys.readouterr().err


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(_write(tmp_path, "[data\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_check_type():
    assert check_type(3, float) and not check_type(True, int) and not check_type("3", int)
    assert check_type(None, int | None) and check_type([1, 2], list[int])
    assert check_type([0.7, 0.1, 0.2], tuple[float, float, float])
    assert not check_type([0.7, 0.1], tuple[float, float, float])
    assert check_type("all", str | list[str]) and check_type(["a"], str | list[str])


def test_defaults_are_a_valid_config():
    cfg = ExperimentConfig()
    assert config_from_dict({}) == cfg


def test_interval_levels_key_and_cli_option(tmp_path, capsys):
    cfg = load_config(_write(tmp_path, "[run]\ninterval_levels = [0.5, 0.95]\n"))
    assert cfg.run.interval_levels == [0.5, 0.95]
    assert load_config(_write(tmp_path, "")).run.interval_levels == [0.5, 0.8, 0.9]
    for text, message in [
        ("[run]\ninterval_levels = [0.8, 1.0]\n", r"must each lie in \(0, 1\).*got 1.0"),
        ("[run]\ninterval_levels = []\n", "must name at least one coverage level"),
        ("[run]\ninterval_levels = [0.8, 0.8]\n", "must not repeat a level"),
        ('[run]\ninterval_levels = ["80%"]\n', "run.*interval_levels must be of type"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(_write(tmp_path, text))
    assert run_experiment.main(["--check", "--interval-levels", "0.6", "0.95"]) == 0
    assert '"interval_levels": [\n' in capsys.readouterr().out
    out = tmp_path / "runs"
    code = run_experiment.main(["--interval-levels", "80", "--output-dir", str(out)])
    assert code == 2
    line = one_error_line(capsys)
    assert "run.interval_levels must each lie in (0, 1)" in line and "80.0" in line
    assert not out.exists()  # nothing left for a run that never started
