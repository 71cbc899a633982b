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
"""

from __future__ import annotations

import argparse
import json
import logging
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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 2 bad input or a file-system error such
    as a read-only folder or a full disk, 130 interrupted).

    Args:
        argv: arguments (sys.argv[1:] when None).
    """
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
