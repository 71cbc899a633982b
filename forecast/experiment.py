"""Run an experiment: load, split, scale, window, fit every model per seed, evaluate on
every test window, and write a run folder with a leaderboard and plots."""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast import metrics
from forecast.data.frame import ColumnRoles
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.split import SplitSpec
from forecast.evaluate import predict_dataset, predictions_frame, score
from forecast.models.base import Forecaster
from forecast.models.registry import create_model, get_entry
from forecast.plots import forecast_plot, horizon_error_plot
from forecast.runs import RunFolder

log = logging.getLogger(__name__)

BASELINES = ["naive", "seasonal_naive", "mean", "drift", "moving_average", "linear", "nlinear"]


@dataclass
class ExperimentConfig:
    """Everything an experiment needs; written to the run folder as resolved.

    Args:
        dataset: 'synthetic' (the embedded ground-truth data), a registered dataset name
            (see `forecast.data.registry.list_datasets`) or 'csv' (with data_path).
        data_path: a local file for a registered dataset, or the CSV for 'csv'.
        targets: target columns; the dataset's defaults when None.
        covariates: past covariates: 'all' other value columns, 'none', or a list.
        known_covariates: user columns whose future values are known.
        calendar: add calendar features (known in the future) from the time index.
        time_column: time column of a CSV.
        series_id: series-id column of a long-format CSV with several series.
        input_length: encoder length L.
        horizon: forecast length H.
        split: 'fractions', 'ett_hour', 'ett_minute' or None for the dataset's protocol.
        fractions: train/val/test fractions when split is 'fractions'.
        scaling: 'per_series', 'global' or 'none'.
        stride: step between test windows (1 = every window).
        models: registered model names; baselines are always added.
        model_params: per model name, hyper-parameters passed to `create_model`.
        seeds: each model is trained once per seed.
        device: 'auto', 'cpu', 'cuda' or 'mps' (for neural models).
        progress: show progress bars.
        output_dir: parent folder of run folders.
        run_name: run folder name; a timestamp when None.
        synthetic_rows: rows of the synthetic dataset.
        data_seed: seed of the synthetic dataset.
    """

    dataset: str = "synthetic"
    data_path: str | None = None
    targets: list[str] | None = None
    covariates: str | list[str] = "all"
    known_covariates: list[str] = field(default_factory=list)
    calendar: bool = True
    time_column: str = "date"
    series_id: str | None = None
    input_length: int = 96
    horizon: int = 24
    split: str | None = None
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    scaling: str = "per_series"
    stride: int = 1
    models: list[str] = field(default_factory=lambda: list(BASELINES))
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    progress: bool = True
    output_dir: str = "runs"
    run_name: str | None = None
    synthetic_rows: int = 4000
    data_seed: int = 0


@dataclass
class ExperimentResult:
    """What a run produced: the leaderboard and where it was written."""

    leaderboard: pd.DataFrame
    run_dir: Path
    per_seed: pd.DataFrame
    bundle: DataBundle
    models: dict[str, Forecaster]  # the first seed's fitted models


def load_source(cfg: ExperimentConfig) -> tuple[pd.DataFrame, ColumnRoles, SplitSpec, dict]:
    """The frame, its column roles, the split, and metadata (e.g. synthetic ground truth)."""
    meta: dict[str, Any] = {"dataset": cfg.dataset}
    fractions = tuple(cfg.fractions)
    if cfg.dataset == "synthetic":
        from forecast.data.synthetic import make_driver_dataset

        syn = make_driver_dataset(cfg.synthetic_rows, seed=cfg.data_seed)
        df, time_col, default_targets = syn.frame, "date", [syn.target]
        value_cols, split_kind = [syn.target, *syn.covariates], "fractions"
        meta["truth"] = dataclasses.asdict(syn.truth)
    elif cfg.dataset == "csv":
        if not cfg.data_path:
            raise ValueError("dataset 'csv' needs --data-path pointing to the CSV file")
        if not cfg.targets:
            raise ValueError("dataset 'csv' needs --targets naming the column(s) to forecast")
        df, time_col, default_targets = pd.read_csv(cfg.data_path), cfg.time_column, cfg.targets
        skip = {time_col, cfg.series_id}
        value_cols, split_kind = [c for c in df.columns if c not in skip], "fractions"
    else:
        from forecast.data.registry import load_dataset

        df, spec = load_dataset(cfg.dataset, data_path=cfg.data_path)
        time_col, default_targets = spec.time_column, list(spec.targets)
        value_cols, split_kind = list(spec.columns), spec.split
        fractions = spec.ratios or fractions
        meta["source"] = spec.url
    targets = list(cfg.targets or default_targets)
    if cfg.covariates == "all":
        past = [c for c in value_cols if c not in targets and c not in cfg.known_covariates]
    elif cfg.covariates == "none":
        past = []
    else:
        past = list(cfg.covariates)
    roles = ColumnRoles(
        tuple(targets),
        tuple(past),
        tuple(cfg.known_covariates),
        calendar=cfg.calendar,
        time_column=time_col,
        series_id=cfg.series_id,
    )
    kind = cfg.split or split_kind
    if kind in ("fractions", "ratio"):
        split = SplitSpec("fractions", fractions=fractions if cfg.split is None else cfg.fractions)
    else:
        split = SplitSpec(kind)
    return df, roles, split, meta


def _params(cfg: ExperimentConfig, name: str, seed: int) -> dict[str, Any]:
    """Per-model parameters plus the run-wide seed/device/progress where the model has them."""
    fields = {f.name for f in dataclasses.fields(get_entry(name).cls.Config)}
    run_wide = {"seed": seed, "device": cfg.device, "progress": cfg.progress}
    params = {k: v for k, v in run_wide.items() if k in fields}
    return {**params, **cfg.model_params.get(name, {})}


def _model_names(cfg: ExperimentConfig) -> list[str]:
    names = list(dict.fromkeys([*cfg.models, *(b for b in BASELINES if b not in cfg.models)]))
    for name in names:
        get_entry(name)  # unknown names fail before any work
    unknown = sorted(set(cfg.model_params) - set(names))
    if unknown:
        raise ValueError(f"model_params given for model(s) {unknown} that are not in the run")
    return names


def run(cfg: ExperimentConfig) -> ExperimentResult:
    """Run the experiment described by `cfg` and write its run folder.

    Everything is validated (data, model names and parameters) before the folder is made.
    """
    if not cfg.seeds:
        raise ValueError("seeds must name at least one seed")
    names = _model_names(cfg)
    df, roles, split, meta = load_source(cfg)
    bundle = prepare_data(
        df,
        roles,
        input_length=cfg.input_length,
        horizon=cfg.horizon,
        split=split,
        scaling=cfg.scaling,
        stride=cfg.stride,
    )
    for name in names:  # bad hyper-parameters fail here, before any training
        create_model(name, bundle.layout, **_params(cfg, name, cfg.seeds[0]))
    folder = RunFolder(cfg.output_dir, cfg.run_name)
    folder.write_json("config.json", _resolved(cfg, bundle, meta, names))
    log.info("run folder %s", folder.path)

    rows, per_horizon, tidy, fitted = [], [], {}, {}
    for seed in cfg.seeds:
        for name in names:
            model = create_model(name, bundle.layout, **_params(cfg, name, seed))
            t0 = time.perf_counter()
            model.fit(bundle.train, bundle.val)
            fit_s = time.perf_counter() - t0
            preds = predict_dataset(model, bundle.test)
            result = score(preds, bundle, bundle.test)
            kind = get_entry(name).kind
            rows.append({"model": name, "kind": kind, "seed": seed, **result, "fit_seconds": fit_s})
            log.info(
                "%s seed %d: test mse %.4f mae %.4f (%.1fs)",
                name,
                seed,
                result["mse"],
                result["mae"],
                fit_s,
            )
            if seed == cfg.seeds[0]:
                fitted[name] = model
                tidy[name] = predictions_frame(preds, bundle, bundle.test)
                curve = metrics.per_horizon_table(preds.target, preds.prediction)
                per_horizon.append(curve.assign(model=name))
                folder.write_csv(f"predictions/{name}.csv", tidy[name])
                if hasattr(model, "save_history") and getattr(model, "history_", None) is not None:
                    model.save_history(folder.file(f"history/{name}.csv"))
                if hasattr(model, "save_checkpoint"):
                    model.save_checkpoint(
                        folder.file(f"checkpoints/{name}.pt"), scaler=bundle.scaler
                    )

    per_seed = pd.DataFrame(rows)
    board = leaderboard(per_seed)
    horizon = pd.concat(per_horizon, ignore_index=True)
    folder.write_csv("metrics_per_seed.csv", per_seed)
    folder.write_csv("per_horizon.csv", horizon)
    folder.write_csv("leaderboard.csv", board)
    folder.write_text("leaderboard.md", leaderboard_markdown(board, cfg, bundle))
    best = board["model"].iloc[0]
    shown = {best: tidy[best], **({"naive": tidy["naive"]} if best != "naive" else {})}
    fig, data = forecast_plot(shown, target=bundle.layout.targets[0])
    folder.write_figure("plots/forecasts.png", fig, data)
    folder.write_figure("plots/horizon_mse.png", horizon_error_plot(horizon), horizon)
    folder.write_json(
        "metrics.json",
        {"leaderboard": board.to_dict("records"), "per_seed": per_seed.to_dict("records")},
    )
    return ExperimentResult(board, folder.path, per_seed, bundle, fitted)


def leaderboard(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per model, sorted by test MSE, with skill vs repeat-last."""
    cols = ["mse", "mae", "rmse", "smape", "mase", "orig_mse", "orig_mae", "fit_seconds"]
    cols = [c for c in cols if c in per_seed]
    grouped = per_seed.groupby(["model", "kind"], sort=False)
    board = grouped[cols].mean()
    std = grouped[["mse", "mae"]].std(ddof=0).fillna(0.0)
    board["mse_std"], board["mae_std"] = std["mse"], std["mae"]
    board["n_seeds"] = grouped.size()
    board = board.reset_index()
    if "naive" in set(board["model"]):
        naive = float(board.loc[board["model"] == "naive", "mse"].iloc[0])
        board["skill_vs_naive"] = 1.0 - board["mse"] / naive
    return board.sort_values("mse", kind="stable").reset_index(drop=True)


def leaderboard_markdown(board: pd.DataFrame, cfg: ExperimentConfig, bundle: DataBundle) -> str:
    """The leaderboard as a Markdown table with a one-line description of the setup."""
    lay = bundle.layout
    head = (
        f"# Leaderboard: {cfg.dataset}, targets {list(lay.targets)}, input {lay.input_length}, "
        f"horizon {lay.horizon}, {len(bundle.test)} test windows, seeds {cfg.seeds}\n\n"
        "Errors on the scaled (z-score) space unless prefixed `orig_`; mean over seeds.\n\n"
    )
    shown = board.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: f"{v:.4f}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return head + "\n".join([header, rule, *body]) + "\n"


def _resolved(cfg: ExperimentConfig, bundle: DataBundle, meta: dict, names: list[str]) -> dict:
    lay = bundle.layout
    return {
        "config": {**dataclasses.asdict(cfg), "models": names},
        "data": {
            **meta,
            "series": bundle.frame.series_ids,
            "rows": bundle.frame.lengths().tolist(),
            "freq": bundle.frame.freq,
            "split_borders": bundle.borders,
            "windows": {
                p: len(d) if d is not None else 0
                for p, d in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
            },
            "layout": dataclasses.asdict(lay),
        },
        "model_params": {n: _params(cfg, n, cfg.seeds[0]) for n in names},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
    }
