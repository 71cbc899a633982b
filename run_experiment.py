#!/usr/bin/env python
"""Run a forecasting experiment from a config file and write a run folder.

With no options it runs configs/quick.toml: every registered model (baselines and neural
models, small training budgets) on the embedded synthetic dataset, whose true driver
covariate and lag are known.

A config file (TOML, see forecast/config.py and configs/*.toml) has the sections [run],
[data], [train], [model.NAME], [evaluation], [backtest], [interpret]. Change any value with
--set (repeatable; applied after the file and the shortcut options below):
    --set data.horizon=48            a config section's key (SECTION.KEY=VALUE)
    --set run.seeds=[0,1,2]          lists and numbers as literals, bare words as strings
    --set train.epochs=5             training settings shared by every neural model
    --set lstm.attention=luong_dot   a model's hyper-parameter (MODEL.PARAM=VALUE,
                                     the same as model.lstm.attention=luong_dot)
    --set 'models=["lstm","linear"]' the models to run (baselines are always added)

Examples:
    python run_experiment.py
    python run_experiment.py --config configs/etth1_u.toml
    python run_experiment.py --config configs/etth1_u.toml --set run.seeds=[0] --models lstm
    python run_experiment.py --dataset ETTh1 --data-path ../shared/data/ETTh1.csv \\
        --targets OT --covariates none --no-calendar --input-length 96 --horizon 24
    python run_experiment.py --dataset weather --data-path ../shared/data/weather.csv \
        --targets all --input-length 336 --horizon 96 --models naive nlinear --seeds 0
    python run_experiment.py --dataset csv --data-path both.csv --targets y --gaps keep \
        --split timestamps --split-at 2020-03-01 2020-04-01
    python run_experiment.py --models naive linear --set linear.alpha=10 --seeds 0 1 2
    python run_experiment.py --resume runs/20250101-120000   # finish an interrupted run

Forecast the steps after the end of new data with a saved model (a run keeps every model
and seed as models/<name>_seed<k>.pt; `predict --help` for details):
    python run_experiment.py predict --run runs/20250101-120000 --model lstm \
        --data new.csv [--future future.csv] [--seed 0] --out forecasts.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light imports at the top: --help and --list-datasets never load torch (--check
# does: validating model parameters needs the model classes).
from forecast.config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    config_from_dict,
    config_to_dict,
    read_toml,
)

if TYPE_CHECKING:
    import pandas as pd

    from forecast.experiment import ExperimentResult

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "quick.toml"

# Shortcut options: (flag, config path, argparse keywords). Each maps onto one config key.
SHORTCUTS: list[tuple[str, str, dict[str, Any]]] = [
    ("--dataset", "data.dataset", {"help": "'synthetic', a registered dataset or 'csv'"}),
    ("--data-path", "data.data_path", {"help": "local file of a registered dataset, or the CSV"}),
    (
        "--targets",
        "data.targets",
        {"nargs": "+", "help": "target column(s), or 'all': every numeric column (track M)"},
    ),
    ("--covariates", "data.covariates", {"nargs": "+", "help": "'all', 'none', or names"}),
    ("--known-covariates", "data.known_covariates", {"nargs": "+", "help": "known-future columns"}),
    ("--no-calendar", "data.calendar", {"action": "store_false", "help": "no calendar features"}),
    (
        "--calendar",
        "data.calendar",
        {
            "nargs": "+",
            "help": "calendar features: 'auto', or some of minute hour weekday day month",
        },
    ),
    ("--time-column", "data.time_column", {"help": "time column of a CSV"}),
    ("--series-id", "data.series_id", {"help": "series-id column of a long-format CSV"}),
    ("--synthetic-rows", "data.synthetic_rows", {"type": int, "help": "synthetic data rows"}),
    ("--input-length", "data.input_length", {"type": int, "help": "encoder length L"}),
    ("--horizon", "data.horizon", {"type": int, "help": "forecast length H"}),
    (
        "--split",
        "data.split",
        {
            "choices": ["fractions", "borders", "timestamps", "ett_hour", "ett_minute"],
            "help": "split; default: the dataset's protocol (fractions for a CSV)",
        },
    ),
    (
        "--borders",
        "data.borders",
        {
            "nargs": "+",
            "type": int,
            "metavar": "ROW",
            "help": "with --split borders: TRAIN_END VAL_END [TEST_END] row indices",
        },
    ),
    (
        "--split-at",
        "data.split_at",
        {
            "nargs": "+",
            "metavar": "TIME",
            "help": "with --split timestamps: VAL_START TEST_START [TEST_END]",
        },
    ),
    (
        "--fractions",
        "data.fractions",
        {"nargs": 3, "type": float, "metavar": ("TRAIN", "VAL", "TEST"), "help": "fractions"},
    ),
    ("--freq", "data.freq", {"help": "frequency alias (h, 15min, D); inferred when not given"}),
    (
        "--fill",
        "data.fill",
        {"choices": ["ffill", "interpolate", "zero"], "help": "fill NaN (and --gaps fill) values"},
    ),
    (
        "--gaps",
        "data.gaps",
        {
            "choices": ["error", "fill", "keep"],
            "help": "missing timestamps: error, fill (insert rows, needs --fill) or keep rows "
            "as they are; default: the dataset's rule, else error",
        },
    ),
    (
        "--drop-duplicates",
        "data.drop_duplicates",
        {"action": "store_true", "help": "drop exact duplicate rows"},
    ),
    ("--period", "data.period", {"type": int, "help": "seasonal period in rows"}),
    ("--scaling", "data.scaling", {"choices": ["per_series", "global", "none"], "help": "z-score"}),
    ("--stride", "evaluation.stride", {"type": int, "help": "step between test windows"}),
    ("--models", "models", {"nargs": "+", "help": "models or 'all'/'baselines'/'neural'"}),
    ("--seeds", "run.seeds", {"nargs": "+", "type": int, "help": "one fit per model and seed"}),
    ("--device", "run.device", {"choices": ["auto", "cpu", "cuda", "mps"], "help": "device"}),
    ("--output-dir", "run.output_dir", {"help": "parent folder of run folders"}),
    ("--run-name", "run.name", {"help": "run folder name (never reused)"}),
    (
        "--predictions",
        "run.predictions",
        {"choices": ["npz", "csv", "none"], "help": "prediction files: sample, full CSV, none"},
    ),
    (
        "--interval-levels",
        "run.interval_levels",
        {
            "nargs": "+",
            "type": float,
            "metavar": "LEVEL",
            "help": "coverage levels of the scored prediction intervals, each in (0, 1); "
            "default 0.5 0.8 0.9",
        },
    ),
    ("--interpret", "run.interpret", {"action": "store_true", "help": "interpretation plots"}),
]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface: a config file, overrides, and shortcut options."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        type=Path,
        help="experiment config (TOML); default: configs/quick.toml",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="SECTION.KEY=VALUE (data.horizon=48) or MODEL.PARAM=VALUE (lstm.hidden_size=32); "
        "repeatable",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run in its folder")
    p.add_argument("--check", action="store_true", help="validate, print the config, and exit")
    g = p.add_argument_group("shortcuts (each sets one config key, e.g. --horizon = data.horizon)")
    for flag, path, kw in SHORTCUTS:
        kw = {**kw, "help": f"{kw['help']} ({path})"}
        if not {"action", "choices", "metavar"} & set(kw):
            kw["metavar"] = flag[2:].upper().replace("-", "_")
        g.add_argument(flag, dest=path, default=None, **kw)
    g = p.add_argument_group("output and information")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument("--quiet", action="store_true", help="log warnings only")
    g.add_argument("--list-models", action="store_true", help="list models and exit")
    g.add_argument("--list-datasets", action="store_true", help="list datasets and exit")
    return p


def _shortcut_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config path -> value for every shortcut option that was given.

    Args:
        args: parsed command-line arguments.
    """
    out = {}
    for _, path, _ in SHORTCUTS:
        value = getattr(args, path)
        if value is None or (path == "data.calendar" and value is True):
            continue
        if path == "data.calendar" and isinstance(value, list) and value in (["auto"], ["none"]):
            value = value == ["auto"]
        if path == "data.covariates" and len(value) == 1 and value[0] in ("all", "none"):
            value = value[0]
        out[path] = list(value) if isinstance(value, list | tuple) else value
    return out


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The validated `ExperimentConfig`: file (or quick default), shortcuts, then --set.

    Args:
        args: parsed command-line arguments.
    """
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    raw = read_toml(path) if path is not None else {}
    for key, value in _shortcut_overrides(args).items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    for item in args.overrides:
        apply_override(raw, item)
    if args.no_progress:
        raw.setdefault("run", {})["progress"] = False
    return config_from_dict(raw)


def _list(args: argparse.Namespace) -> None:
    if args.list_models:  # the model classes import torch
        from forecast.models.registry import get_entry, list_models

        for name in list_models():
            entry = get_entry(name)
            print(f"{name:20s} {entry.kind:9s} {entry.description}")
    if args.list_datasets:
        from forecast.data.registry import get_dataset_spec, list_datasets

        print(f"{'synthetic':14s} embedded ground-truth data (driver covariate at a known lag)")
        print(
            f"{'synthetic_lagged':14s} embedded: a driver at a non-round lag, correlated "
            "distractors, AR(1) noise"
        )
        for name in list_datasets():
            spec = get_dataset_spec(name)
            print(f"{name:14s} {spec.freq:6s} targets {list(spec.targets)}  {spec.description}")


def _print_result(result: ExperimentResult) -> None:
    """The leaderboard, errors per step, DM note, backtest and where everything is."""
    import pandas as pd

    from forecast.compare import formatted
    from forecast.report import UNITS_NOTE, display_board, horizon_table

    board = result.leaderboard
    print()
    print(formatted(display_board(board)).to_string(index=False))
    print(f"errors {UNITS_NOTE}")
    per_step = horizon_table(pd.read_csv(result.run_dir / "per_horizon.csv"), board)
    print("\nMSE per forecast step (mean over seeds):")
    print(formatted(per_step).to_string(index=False))
    sig = result.significance
    print(
        f"\ndm_*: Diebold-Mariano vs the best baseline '{sig['dm_vs'].iloc[0]}' "
        "(squared error per window, HLN-corrected; negative = better than it)"
    )
    if result.backtest is not None:
        folds = result.backtest.groupby(["model", "fold"])["mse"].mean().unstack("fold")
        print("\nbacktest MSE per fold:")
        print(folds.to_string(float_format=lambda v: f"{v:.4f}"))
    d = result.run_dir
    print(f"\nrun folder: {d}")
    print(f"report:     {d / 'report.html'} (and report.md)")
    print(f"leaderboard {d / 'leaderboard.md'}, metrics {d / 'metrics.json'}")


def describe_error(err: Exception) -> str:
    """One line for the user: an `OSError` as 'PATH: reason', anything else as its text.

    Args:
        err: the error that stopped the run.
    """
    if isinstance(err, OSError) and err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else err.filename
        return f"{where}: {err.strerror or type(err).__name__}"
    return str(err) or type(err).__name__


PREDICT_DOC = """Forecast the H steps after the end of each series of a CSV with a model saved
by a run (models/<name>_seed<k>.pt in the run folder), in original units with real
timestamps. The data needs the columns the run was trained on (one or many series, at
least input_length rows each); calendar features of the future steps are built from
their timestamps; user-supplied known covariates for those steps come from --future
(the time column, the series id if any, and the known covariates).

Writes CSV, or Parquet for an --out ending in .parquet (needs pyarrow). Columns: the
series id (if any), time, one column per target.

Example:
    python run_experiment.py predict --run runs/r --model lstm --data new.csv \\
        --future future.csv --out forecasts.csv
"""


def build_predict_parser() -> argparse.ArgumentParser:
    """The `predict` subcommand: forecasts from a run folder's saved model."""
    p = argparse.ArgumentParser(
        prog="run_experiment.py predict",
        description=PREDICT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="the run folder")
    p.add_argument("--model", required=True, help="a model of the run (e.g. lstm, linear)")
    p.add_argument("--seed", type=int, help="which seed's model; default: the run's first")
    p.add_argument("--data", required=True, type=Path, help="history: CSV (or .parquet)")
    p.add_argument("--future", type=Path, help="known covariates of the future steps")
    p.add_argument("--out", required=True, type=Path, help="forecasts: .csv or .parquet")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument(
        "--coverage",
        type=float,
        metavar="C",
        help="add <target>_lower/_upper bounds at this coverage (e.g. 0.8), split-conformal "
        "on the most recent complete windows of --data",
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], help="device; default: the run's"
    )
    return p


_ARTIFACT = re.compile(r"^(?P<model>.+)_seed(?P<seed>\d+)\.pt$")


def saved_model(run_dir: Path, model: str, seed: int | None) -> Path:
    """The saved pipeline of (model, seed) in a run folder; a ValueError names what the
    folder holds when it is not there.

    Args:
        run_dir: the run folder.
        model: the model's name.
        seed: the seed; None: the run's first seed.
    """
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no run folder there")
    saved: dict[str, list[int]] = {}
    for path in sorted((run_dir / "models").glob("*.pt")):
        match = _ARTIFACT.match(path.name)
        if match:
            saved.setdefault(match["model"], []).append(int(match["seed"]))
    if model not in saved:
        listed = sorted(saved) or "none (run.checkpoints was false, or an older run)"
        raise ValueError(f"{run_dir} has no saved model {model!r}; saved: {listed}")
    seeds = sorted(saved[model])
    if seed is None:
        try:
            from forecast.io import read_json

            first = read_json(run_dir / "config.json")["config"]["run"]["seeds"][0]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            first = None
        seed = first if first in seeds else seeds[0]
    if seed not in seeds:
        raise ValueError(f"{run_dir} has no seed {seed} for model {model!r}; seeds: {seeds}")
    from forecast.pipeline import artifact_path

    return artifact_path(run_dir, model, seed)


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV, or a Parquet file by its suffix; errors name the file."""
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path)
        except ImportError:
            raise ValueError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow)"
            ) from None
    from forecast.io import read_csv

    return read_csv(path)


def predict(args: argparse.Namespace) -> pd.DataFrame:
    """Run the `predict` subcommand: read, forecast, write `args.out`; the forecasts.

    Args:
        args: parsed `predict` arguments.
    """
    import importlib.util

    path = saved_model(Path(args.run), args.model, args.seed)
    out: Path = args.out
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; choose another --out or pass --force to replace it")
    parquet = out.suffix == ".parquet"
    if parquet and importlib.util.find_spec("pyarrow") is None:
        raise ValueError(f"{out}: writing Parquet needs pyarrow (pip install pyarrow); or use .csv")
    from forecast.io import atomic_write
    from forecast.pipeline import load

    pipe = load(path, device=args.device)
    frame = _read_table(args.data)
    future = _read_table(args.future) if args.future is not None else None
    forecasts = pipe.forecast(frame, future=future, coverage=args.coverage)
    if parquet:
        atomic_write(out, lambda p: forecasts.to_parquet(p, index=False))
    else:
        atomic_write(out, lambda p: forecasts.to_csv(p, index=False))
    return forecasts


def predict_main(argv: list[str]) -> int:
    """The `predict` subcommand; returns the exit status (0 done, 2 bad input).

    Args:
        argv: the arguments after `predict`.
    """
    args = build_predict_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        forecasts = predict(args)
    except (ValueError, OSError) as err:
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 2
    print(f"wrote {len(forecasts)} forecast rows to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 2 bad input or a file-system error such
    as a read-only folder or a full disk, 130 interrupted). `predict` as the first argument
    runs the predict subcommand (see `build_predict_parser`).

    Args:
        argv: arguments (sys.argv[1:] when None).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:
        return predict_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.list_models or args.list_datasets:
        _list(args)
        return 0
    try:
        if args.resume:
            given = args.config or args.overrides or _shortcut_overrides(args)
            if given:
                raise ConfigError(
                    "--resume takes the run folder alone (its config.json is used); "
                    "drop --config, --set and the shortcut options"
                )
            from forecast.experiment import resume

            result = resume(args.resume, progress=False if args.no_progress else None)
        else:
            cfg = config_from_args(args)
            if args.check:
                print(json.dumps(config_to_dict(cfg), indent=2))
                return 0
            from forecast.experiment import run

            result = run(cfg)
    except (ValueError, OSError) as err:  # bad input or a file-system fault: one clear line
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finish the run with --resume RUN_DIR (see the log)", file=sys.stderr)
        return 130
    _print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
