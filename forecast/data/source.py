"""From the data section of a config to a frame, its column roles, its split and the
options `prepare_data` needs (the dataset's cleaning rules merged with the config's)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pandas as pd

from forecast.config import SYNTHETIC
from forecast.data.frame import STEP, ColumnRoles, is_step_index
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.split import SplitSpec
from forecast.io import read_csv

if TYPE_CHECKING:
    from forecast.config import DataConfig, ExperimentConfig


def _spec(data: DataConfig):
    """The registry description of a registered dataset, else None."""
    if data.dataset in SYNTHETIC or data.dataset == "csv":
        return None
    from forecast.data.registry import get_dataset_spec

    return get_dataset_spec(data.dataset)


def prepare_options(data: DataConfig) -> dict[str, Any]:
    """Keywords of `prepare_data` from the config, the dataset's cleaning rules filling in
    what the config leaves unset (gaps, drop_duplicates, period).

    Args:
        data: the data section of the config.
    """
    spec = _spec(data)
    gaps = data.gaps or (spec.gaps if spec is not None else "error")
    drop = data.drop_duplicates
    if drop is None:
        drop = spec.drop_duplicate_rows if spec is not None else False
    period = data.period or (spec.seasonal_period if spec is not None else None)
    return {
        "freq": data.freq,
        "fill": data.fill,
        "gaps": gaps,
        "drop_duplicates": drop,
        "period": period,
    }


def all_targets(df: pd.DataFrame, skip: set[str | None]) -> list[str]:
    """Every numeric column not in `skip` (time, series id, known covariates): track M.

    Args:
        df: the frame.
        skip: columns that cannot be targets.
    """
    cols = [
        c
        for c in df.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]
    if not cols:
        raise ValueError(
            f"targets 'all': no numeric column besides {sorted(s for s in skip if s)}; "
            f"the frame has columns {list(df.columns)}"
        )
    return cols


def _split(data: DataConfig, default_kind: str, fractions: tuple) -> SplitSpec:
    kind = data.split or default_kind
    if kind in ("fractions", "ratio"):
        return SplitSpec("fractions", fractions=fractions if data.split is None else data.fractions)
    if kind == "borders":
        return SplitSpec("borders", borders=tuple(data.borders or ()))
    if kind == "timestamps":
        return SplitSpec("timestamps", timestamps=tuple(str(t) for t in data.split_at or ()))
    return SplitSpec(kind)


def load_source(data: DataConfig) -> tuple[pd.DataFrame, ColumnRoles, SplitSpec, dict]:
    """The frame, its column roles, the split, and metadata (e.g. synthetic ground truth).

    Args:
        data: the data section of the config.
    """
    meta: dict[str, Any] = {"dataset": data.dataset}
    fractions = tuple(data.fractions)
    if data.dataset in SYNTHETIC:
        from forecast.data.synthetic import make_driver_dataset, make_lagged_driver_dataset

        make = make_driver_dataset if data.dataset == "synthetic" else make_lagged_driver_dataset
        syn = make(data.synthetic_rows, seed=data.data_seed)
        df, time_col, default_targets = syn.frame, "date", [syn.target]
        value_cols, split_kind = [syn.target, *syn.covariates], "fractions"
        meta["truth"] = dataclasses.asdict(syn.truth)
    elif data.dataset == "csv":
        df, time_col, default_targets = read_csv(data.data_path), data.time_column, data.targets
        skip = {time_col, data.series_id}
        value_cols, split_kind = [c for c in df.columns if c not in skip], "fractions"
        meta["source"] = str(data.data_path)
    else:
        from forecast.data.registry import dataset_source, load_dataset

        df, spec = load_dataset(data.dataset, data_path=data.data_path)
        time_col, default_targets = spec.time_column, list(spec.targets)
        value_cols, split_kind = list(spec.columns), spec.split
        fractions = spec.ratios or fractions
        source = dataset_source(spec, data.data_path)  # the file read, not only the URL
        meta.update(source=source["path"], source_from=source["from"], source_url=source["url"])
    known = list(data.known_covariates)
    named = [] if isinstance(data.covariates, str) else list(data.covariates)
    track_m = data.targets in ("all", ["all"])
    if track_m:  # every numeric column is a target; past covariates only when named
        targets = all_targets(df, {time_col, data.series_id, *known, *named})
    else:
        targets = list(data.targets or default_targets)
    if data.covariates == "all" and track_m:
        past = []
    elif data.covariates == "all":
        past = [c for c in value_cols if c not in targets and c not in known]
    elif data.covariates == "none":
        past = []
    else:
        past = list(data.covariates)
    calendar = data.calendar if isinstance(data.calendar, bool) else tuple(data.calendar)
    if calendar is True and time_col in df.columns and is_step_index(df[time_col]):
        calendar = False  # an integer step index has no calendar
    roles = ColumnRoles(
        tuple(targets),
        tuple(past),
        tuple(known),
        calendar=calendar,
        time_column=time_col,
        series_id=data.series_id,
    )
    options = prepare_options(data)
    meta["cleaning"] = {k: options[k] for k in ("gaps", "drop_duplicates", "fill")}
    return df, roles, _split(data, split_kind, fractions), meta


def make_bundle(
    cfg: ExperimentConfig, df: pd.DataFrame, roles: ColumnRoles, split: SplitSpec
) -> DataBundle:
    """`prepare_data` with the config's windows, scaling, stride and data options.

    Args:
        cfg: the experiment config.
        df: the frame from `load_source`.
        roles: its column roles.
        split: the split to use (the config's, or a backtest fold's).
    """
    bundle = prepare_data(
        df,
        roles,
        input_length=cfg.data.input_length,
        horizon=cfg.data.horizon,
        split=split,
        scaling=cfg.data.scaling,
        stride=cfg.evaluation.stride,
        **prepare_options(cfg.data),
    )
    if cfg.backtest.folds and bundle.frame.freq == STEP:
        raise ValueError(
            f"backtest.folds needs dates in the time column, but {roles.time_column!r} is an "
            "integer step index; set backtest.folds=0"
        )
    return bundle
