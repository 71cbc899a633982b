#!/usr/bin/env python
"""Run a forecasting experiment and write a run folder.

With no options it runs every registered model (baselines and neural models) on the
embedded synthetic dataset, whose true driver covariate and lag are known.

Examples:
    python run_experiment.py
    python run_experiment.py --dataset ETTh1 --data-path ../shared/data/ETTh1.csv \\
        --targets OT --covariates none --no-calendar --input-length 96 --horizon 24
    python run_experiment.py --models naive linear --set linear.alpha=10 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
from typing import Any

from forecast.experiment import BASELINES, ExperimentConfig, run
from forecast.models.registry import get_entry, list_models


def _value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """['lstm.hidden_size=32'] -> {'lstm': {'hidden_size': 32}}."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not model or not name:
            raise ValueError(
                f"--set expects MODEL.PARAM=VALUE (e.g. linear.alpha=10), got {item!r}"
            )
        params.setdefault(model, {})[name] = _value(value)
    return params


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every option maps to an `ExperimentConfig` field."""
    d = ExperimentConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=d.dataset,
        help="'synthetic' (embedded ground-truth data, default), a registered "
        "dataset (see --list-datasets) or 'csv' with --data-path",
    )
    g.add_argument(
        "--data-path",
        help="local file for a registered dataset (skips the "
        "download), or the CSV file for --dataset csv",
    )
    g.add_argument(
        "--targets", nargs="+", help="target column(s); the dataset's default if omitted"
    )
    g.add_argument(
        "--covariates",
        nargs="+",
        default=["all"],
        help="past covariates: 'all' other columns (default), 'none', or names",
    )
    g.add_argument(
        "--known-covariates",
        nargs="+",
        default=[],
        help="columns whose future values are known (fed to decoders)",
    )
    g.add_argument(
        "--no-calendar",
        action="store_true",
        help="do not add calendar features (hour, weekday, ...) as known covariates",
    )
    g.add_argument("--time-column", default=d.time_column, help="time column of a CSV")
    g.add_argument("--series-id", help="series-id column of a long-format CSV")
    g.add_argument(
        "--synthetic-rows", type=int, default=d.synthetic_rows, help="rows of the synthetic dataset"
    )
    g = p.add_argument_group("windows and split")
    g.add_argument("--input-length", type=int, default=d.input_length, help="encoder length L")
    g.add_argument("--horizon", type=int, default=d.horizon, help="forecast length H")
    g.add_argument(
        "--split",
        choices=["fractions", "ett_hour", "ett_minute"],
        help="split protocol; the dataset's own when omitted (70/10/20 fractions "
        "for synthetic and CSV data)",
    )
    g.add_argument(
        "--fractions",
        nargs=3,
        type=float,
        default=list(d.fractions),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions for --split fractions",
    )
    g.add_argument(
        "--scaling",
        choices=["per_series", "global", "none"],
        default=d.scaling,
        help="z-score per series or global, fitted on training rows only",
    )
    g.add_argument(
        "--stride", type=int, default=d.stride, help="step between test windows (1 = every window)"
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models to run (see --list-models); baselines are always added; "
        "default: every registered model",
    )
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="MODEL.PARAM=VALUE",
        help="a model hyper-parameter, repeatable",
    )
    g.add_argument("--seeds", nargs="+", type=int, default=d.seeds, help="seeds per model")
    g.add_argument(
        "--device",
        default=d.device,
        choices=["auto", "cpu", "cuda", "mps"],
        help="device for neural models ('auto': CUDA, then MPS, then CPU)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", default=d.output_dir, help="parent folder of run folders")
    g.add_argument("--run-name", help="run folder name (a timestamp by default; never reused)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument("--quiet", action="store_true", help="log warnings only")
    g = p.add_argument_group("information")
    g.add_argument("--list-models", action="store_true", help="list models and exit")
    g.add_argument("--list-datasets", action="store_true", help="list datasets and exit")
    return p


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Turn parsed arguments into an `ExperimentConfig`."""
    cov = args.covariates
    covariates = cov[0] if len(cov) == 1 and cov[0] in ("all", "none") else cov
    return ExperimentConfig(
        dataset=args.dataset,
        data_path=args.data_path,
        targets=args.targets,
        covariates=covariates,
        known_covariates=args.known_covariates,
        calendar=not args.no_calendar,
        time_column=args.time_column,
        series_id=args.series_id,
        input_length=args.input_length,
        horizon=args.horizon,
        split=args.split,
        fractions=tuple(args.fractions),
        scaling=args.scaling,
        stride=args.stride,
        models=args.models or list_models(),
        model_params=parse_overrides(args.overrides),
        seeds=args.seeds,
        device=args.device,
        progress=not args.no_progress,
        output_dir=args.output_dir,
        run_name=args.run_name,
        synthetic_rows=args.synthetic_rows,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.list_models:
        for name in list_models():
            entry = get_entry(name)
            print(f"{name:20s} {entry.kind:9s} {entry.description}")
        return 0
    if args.list_datasets:
        from forecast.data.registry import get_dataset_spec, list_datasets

        print(f"{'synthetic':14s} embedded ground-truth data (driver covariate at a known lag)")
        for name in list_datasets():
            spec = get_dataset_spec(name)
            print(f"{name:14s} {spec.freq:6s} targets {list(spec.targets)}  {spec.description}")
        return 0
    try:
        cfg = config_from_args(args)
        result = run(cfg)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    board = result.leaderboard
    cols = [
        c
        for c in ["model", "kind", "mse", "mse_std", "mae", "mase", "skill_vs_naive", "fit_seconds"]
        if c in board
    ]
    print()
    print(board[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nbaselines: {', '.join(BASELINES)}")
    print(f"run folder: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
