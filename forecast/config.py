"""Experiment configs: TOML files (or dicts) validated into small typed dataclasses.

A config file mirrors `ExperimentConfig` section by section::

    models = ["all"]          # 'all', 'baselines', 'neural' or model names

    [run]                     # RunConfig: seeds, device, interpret, output folder
    seeds = [0, 1, 2]

    [data]                    # DataConfig: dataset, columns, split, window lengths
    dataset = "ETTh1"
    horizon = 24

    [train]                   # training settings shared by every neural model
    epochs = 3                # (fields of forecast.training.TrainConfig)

    [model.lstm]              # one model's hyper-parameters (fields of its Config)
    attention = "luong_dot"

    [evaluation]              # EvaluationConfig: test-window stride, DM predictions
    [backtest]                # BacktestConfig: rolling-origin folds, refit or not
    [interpret]               # InterpretConfig: budget of the interpretation plots

Everything is checked before any data is read or any model trained: unknown keys (named
with their section, valid ones listed), wrong types, impossible values, and every model's
hyper-parameters by building its own Config dataclass (its range checks run there).

Overrides (`--set`) are dotted paths: `data.horizon=48`, `run.seeds=[0,1]`,
`train.epochs=2`, `model.lstm.hidden_size=32`, or the short `lstm.hidden_size=32` when the
first part is a registered model name. Values are TOML/Python literals; bare words are
strings.

Relative paths in a config file (`data.data_path`, `run.output_dir`) are resolved against
the project root, the folder above `configs/`, for a file inside a `configs/` folder, and
against the file's own folder otherwise. For a registered dataset, the environment
variable `FORECAST_DATA_<NAME>` (e.g. `FORECAST_DATA_ETTH1`) wins over a path from a file.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecast.config_checks import (
    COVERAGE_LEVELS,
    SYNTHETIC,
    ConfigError,
    check_type,
    model_names,
    model_params,
    typed_fields,
    validate,
)

log = logging.getLogger(__name__)

__all__ = [  # model_names / model_params / validate are re-exported from config_checks
    "ConfigError",
    "ExperimentConfig",
    "apply_override",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "model_names",
    "model_params",
    "read_toml",
    "set_value",
    "toml_text",
    "validate",
    "with_values",
]


@dataclass
class RunConfig:
    """How the experiment runs and where it writes.

    Args:
        seeds: every model is trained once per seed.
        device: 'auto', 'cpu', 'cuda' or 'mps' (neural models).
        interpret: write interpretation plots for every neural model (first seed).
        progress: show progress bars.
        output_dir: parent folder of run folders.
        name: run folder name; a timestamp when None. Never reused.
        checkpoints: save every (model, seed) as a pipeline, `models/<name>_seed<k>.pt`
            (`forecast.load`, `run_experiment.py predict`).
        threads: torch threads per process: 'auto' (the free cores, from the cores this
            process may use and the machine's load, decided once per process; see
            `forecast.threads`) or a count (warned about when it is more than the free
            cores). 1 is immune to the heavy slowdown of several threads on an
            oversubscribed (shared) machine. The choice and the OpenMP wait policy are
            recorded in environment.json.
        workers: (model, seed) pairs fitted in parallel processes; each uses `threads`
            threads (1 for 'auto'). Results do not depend on it. The processes are
            spawned, so a script calling `run` with workers > 1 needs the usual
            `if __name__ == "__main__":` guard.
        interval_levels: coverage levels of the calibrated prediction intervals that
            every model is scored on (`coverage_80`, `width_80`, ... in the leaderboard),
            each in (0, 1). A model with a quantile head is scored on its own levels.
        plots: write figures (and embed them in the report); off saves a few seconds
            per run, e.g. in tests and batch runs.
        predictions: human-readable prediction files under predictions/ (first seed):
            'npz' (default) a CSV sample of the first test windows in original units,
            `predictions/<model>_sample.csv`; 'csv' also every test window as one tidy
            CSV, `predictions/<model>.csv` (large and slow: tens of MB per model on long
            test parts); 'none' no predictions/ folder. Every (model, seed) always keeps
            its full predictions in `results/<model>/seed<k>.npz` (compressed float32 with
            timestamps, series ids and the scaler; read with
            `forecast.evaluate.load_predictions`), which resume and the tests need.
        executor: where the (model, seed) fits run: 'local' (this process, or `workers`
            spawned processes) or 'ray' (one Ray task per fit, `pip install -e
            '.[distributed]'`; see `forecast.executors`). Either way this process writes
            every result into the run folder, so resume and the leaderboard are the same.
        address: the Ray cluster to connect to ('HOST:PORT' of `ray start --head`, or
            'auto'); None or 'local' starts a local Ray instance with `workers` CPUs
            (every core when workers is 1) for this run.
    """

    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    interpret: bool = False
    progress: bool = True
    output_dir: str = "runs"
    name: str | None = None
    checkpoints: bool = True
    threads: int | str = "auto"
    workers: int = 1
    interval_levels: list[float] = field(default_factory=lambda: list(COVERAGE_LEVELS))
    plots: bool = True
    predictions: str = "npz"
    executor: str = "local"
    address: str | None = None


@dataclass
class DataConfig:
    """The data, its columns, split and windows.

    Args:
        dataset: 'synthetic' (embedded ground-truth data: a driver covariate at a known
            lag), 'synthetic_lagged' (a harder one: a non-round lag, distractors
            correlated with the driver, AR(1) noise), a registered dataset (see
            `forecast.data.registry.list_datasets`) or 'csv' (with data_path).
        data_path: a local file for a registered dataset, or the CSV for 'csv'.
        targets: target columns; the dataset's defaults when None; 'all' (or ['all'])
            makes every numeric column except the time, series-id and known-covariate
            columns a target (track M), leaving no past covariates.
        covariates: past covariates: 'all' other value columns, 'none', or a list.
        known_covariates: user columns whose future values are known.
        calendar: calendar features (known in the future) from the time index, sin/cos
            pairs: true picks them from the frequency and the training period, false
            adds none, a list names them ('minute', 'hour', 'weekday', 'day', 'month').
        time_column: time column of a CSV.
        series_id: series-id column of a long-format CSV with several series.
        input_length: encoder length L.
        horizon: forecast length H.
        split: 'fractions', 'borders', 'timestamps', 'ett_hour', 'ett_minute' or None for
            the dataset's protocol.
        fractions: train/val/test fractions when split is 'fractions'.
        borders: row indices [train_end, val_end] or [train_end, val_end, test_end] when
            split is 'borders' (per series; the test part ends with the series when
            test_end is left out).
        split_at: [val_start, test_start] or [..., test_end (exclusive)] timestamps (or
            steps for an integer time column) when split is 'timestamps'.
        freq: pandas frequency alias of the time column; inferred when None.
        fill: NaN fill policy ('ffill', 'interpolate', 'zero'); None: NaN is an error.
        gaps: missing timestamps: 'error', 'fill' (inserted, values filled with `fill`)
            or 'keep' (rows used as they are); None: the dataset's cleaning rule, else
            'error'.
        drop_duplicates: drop exact duplicate rows; None: the dataset's cleaning rule,
            else false.
        period: seasonal period in rows (seasonal baselines, MASE); None: the dataset's,
            else derived from the frequency (1 for an integer step index).
        scaling: 'per_series', 'global' or 'none'.
        synthetic_rows: rows of the synthetic dataset.
        data_seed: seed of the synthetic dataset.
    """

    dataset: str = "synthetic"
    data_path: str | None = None
    targets: str | list[str] | None = None
    covariates: str | list[str] = "all"
    known_covariates: list[str] = field(default_factory=list)
    calendar: bool | list[str] = True
    time_column: str = "date"
    series_id: str | None = None
    input_length: int = 96
    horizon: int = 24
    split: str | None = None
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    borders: list[int] | None = None
    split_at: list[str | int] | None = None
    freq: str | None = None
    fill: str | None = None
    gaps: str | None = None
    drop_duplicates: bool | None = None
    period: int | None = None
    scaling: str = "per_series"
    synthetic_rows: int = 4000
    data_seed: int = 0


@dataclass
class EvaluationConfig:
    """How models are scored and compared.

    Args:
        stride: step between test windows (1 = every window).
        dm_predictions: predictions the Diebold-Mariano test compares: 'first_seed' (one
            trained model per name) or 'seed_mean' (the mean forecast over seeds).
    """

    stride: int = 1
    dm_predictions: str = "first_seed"


@dataclass
class BacktestConfig:
    """Rolling-origin backtest: the test part cut into successive blocks of origins.

    Args:
        folds: number of blocks; 0 turns the backtest off, otherwise at least 2.
        refit: retrain every model per fold on all rows before the fold (its validation
            part the rows just before it); False scores the main models on each block.
    """

    folds: int = 0
    refit: bool = False


@dataclass
class InterpretConfig:
    """Settings of the interpretation written when `run.interpret` is true (see
    `forecast.interpret.interpret_model`).

    Args:
        max_windows: windows used by permutation importance and the deletion test.
        n_repeats: permutation repeats.
        ig_steps: integrated-gradients steps.
        ig_windows: windows attributed by integrated gradients.
    """

    max_windows: int = 512
    n_repeats: int = 5
    ig_steps: int = 32
    ig_windows: int = 128


@dataclass
class ExperimentConfig:
    """Everything an experiment needs; written to the run folder as resolved.

    Args:
        models: model names, or the groups 'all', 'baselines', 'neural'; every baseline
            is always added, except `seasonal_naive` when input_length is shorter than
            its period (left out with a warning; an error when named here).
        run: seeds, device, interpretation, output folder.
        data: dataset, columns, split, window lengths.
        train: training settings for every model whose Config has them (neural models).
        model: per model name, hyper-parameters (override `train`).
        evaluation: scoring and comparison settings.
        backtest: rolling-origin backtest settings.
        interpret: interpretation settings (used when `run.interpret` is true).
    """

    models: list[str] = field(default_factory=lambda: ["all"])
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    interpret: InterpretConfig = field(default_factory=InterpretConfig)


SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "data": DataConfig,
    "evaluation": EvaluationConfig,
    "backtest": BacktestConfig,
    "interpret": InterpretConfig,
}


# -------------------------------------------------------------- dict <-> config
def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an `ExperimentConfig` from a nested dict (a parsed TOML file).

    Args:
        raw: top-level key `models` and sections `run`, `data`, `train`, `model`,
            `evaluation`, `backtest`; anything missing takes its default.
    """
    top = ["models", "train", "model", *SECTIONS]
    unknown = [k for k in raw if k not in top]
    if unknown:
        raise ConfigError(f"unknown section(s) or key(s) {unknown}; valid ones: {top}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {section!r}")
        kwargs[name] = cls(**typed_fields(cls, section, f"[{name}]"))
    models = raw.get("models", ["all"])
    if isinstance(models, str):
        models = [models]
    if not check_type(models, list[str]) or not models:
        raise ConfigError(f"models must be a non-empty list of model names, got {models!r}")
    train = raw.get("train", {})
    per_model = raw.get("model", {})
    if not isinstance(train, dict):
        raise ConfigError(f"[train] must be a table of keys, got {train!r}")
    if not isinstance(per_model, dict) or not all(isinstance(v, dict) for v in per_model.values()):
        raise ConfigError(
            f"[model] must hold one table per model name ([model.lstm] ...), got {per_model!r}"
        )
    cfg = ExperimentConfig(
        models=list(models), train=dict(train), model={k: dict(v) for k, v in per_model.items()}
    )
    for name, value in kwargs.items():
        setattr(cfg, name, value)
    validate(cfg)
    return cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain data (the inverse of `config_from_dict`)."""
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------- overrides
def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, '[0, 1]' -> [0, 1], else text.

    Args:
        text: the right-hand side of a `--set` item.
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, tuple) else value


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `PATH=VALUE` item to a raw config dict, in place.

    Args:
        raw: the nested dict (as parsed from TOML).
        item: 'data.horizon=48', 'model.lstm.hidden_size=32', 'lstm.hidden_size=32',
            'models=["lstm"]'.
    """
    key, sep, value = item.partition("=")
    if not sep or not all(key.strip().split(".")):
        raise ConfigError(
            f"--set expects SECTION.KEY=VALUE (e.g. data.horizon=48) or MODEL.PARAM=VALUE "
            f"(e.g. linear.alpha=10), got {item!r}"
        )
    set_value(raw, key, parse_value(value), where=f"--set {item!r}")


def set_value(raw: dict[str, Any], key: str, value: Any, where: str | None = None) -> None:
    """Set one config value by its dotted path, in place (what `--set` does).

    Args:
        raw: the nested dict (as parsed from TOML).
        key: 'data.horizon', 'train.lr', 'model.lstm.hidden_size', 'lstm.hidden_size' or
            'models'.
        value: the value.
        where: how errors name the setting (default: the key).
    """
    from forecast.models.registry import list_models

    where = where or repr(key)
    parts = key.strip().split(".")
    head = parts[0]
    if head == "models" and len(parts) == 1:
        raw["models"] = value
        return
    if head in SECTIONS or head == "train":
        path = parts
    elif head == "model" and len(parts) == 3:
        path = parts
    elif head in list_models() and len(parts) == 2:
        path = ["model", *parts]
    else:
        raise ConfigError(
            f"{where}: {head!r} is neither a section "
            f"{['models', 'train', 'model', *SECTIONS]} nor a registered model {list_models()}"
        )
    if len(path) != (3 if path[0] == "model" else 2):
        raise ConfigError(f"{where}: expected {path[0]}.KEY=VALUE, got {key!r}")
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {part!r} is not a section")
    node[path[-1]] = value


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw config with values set by their dotted paths (see `set_value`),
    e.g. a search trial's.

    Args:
        raw: the raw config.
        values: path -> value.
    """
    out = copy.deepcopy(raw)
    for path, value in values.items():
        set_value(out, path, value, where=f"setting {path!r}")
    return out


def toml_text(raw: dict[str, Any]) -> str:
    """A raw config dict as TOML text that `read_toml` reads back (keys whose value is
    None, which TOML cannot hold, are left out: their defaults apply).

    Args:
        raw: nested dicts of strings, numbers, booleans and lists.

    >>> print(toml_text({"models": ["lstm"], "train": {"lr": 0.01}}), end="")
    models = ["lstm"]
    <BLANKLINE>
    [train]
    lr = 0.01
    """

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)  # inf and nan are TOML too
        if isinstance(v, str):
            return json.dumps(v)  # a TOML basic string
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to a TOML config")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    def table(node: dict[str, Any], name: str, out: list[str]) -> None:
        plain = {k: v for k, v in node.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in node.items() if isinstance(v, dict)}
        if name and (plain or not nested):
            out.append(f"\n[{name}]")
        out.extend(f"{key(k)} = {value(v)}" for k, v in plain.items())
        for k, v in nested.items():
            table(v, f"{name}.{key(k)}" if name else key(k), out)

    lines: list[str] = []
    table(raw, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


# ------------------------------------------------------------------------- files
def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file as a raw dict, relative paths resolved (see the module docstring).

    Args:
        path: the .toml file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    folder = path.resolve().parent
    root = folder.parent if folder.name == "configs" else folder
    data, run = raw.get("data"), raw.get("run")
    if isinstance(data, dict) and isinstance(data.get("data_path"), str):
        env = f"FORECAST_DATA_{str(data.get('dataset', '')).upper()}"
        if os.environ.get(env) and data.get("dataset") not in ("csv", *SYNTHETIC):
            log.info("using %s=%s instead of the config's data_path", env, os.environ[env])
            data["data_path"] = os.environ[env]
        else:
            data["data_path"] = os.path.normpath(root / Path(data["data_path"]).expanduser())
    if isinstance(run, dict) and isinstance(run.get("output_dir"), str):
        run["output_dir"] = os.path.normpath(root / Path(run["output_dir"]).expanduser())
    return raw


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Read a config file (or start from the defaults), apply `--set` items, validate.

    Args:
        path: a TOML config file; None starts from `ExperimentConfig()` defaults.
        overrides: 'PATH=VALUE' items, applied in order after the file.
    """
    raw = read_toml(path) if path is not None else {}
    for item in overrides or []:
        apply_override(raw, item)
    return config_from_dict(raw)
