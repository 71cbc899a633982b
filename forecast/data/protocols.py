"""The long-term forecasting benchmark protocol (see docs and ../shared/DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecast.data.frame import ColumnRoles
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.registry import DatasetSpec, get_dataset_spec
from forecast.data.split import SplitSpec

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
TRACKS = ("U", "MS", "M")


def track_roles(
    track: str, columns: tuple[str, ...], target: str = "OT", time_column: str = "date"
) -> ColumnRoles:
    """Column roles of a track: U = target only; MS = every column in, target out; M =
    every column in and out. No calendar features (the literature's linear protocol).

    Args:
        track: 'U', 'MS' or 'M'.
        columns: every value column of the dataset.
        target: the target column of tracks U and MS.
        time_column: the time column.
    """
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; expected one of {list(TRACKS)}")
    others = tuple(c for c in columns if c != target)
    if track == "U":
        return ColumnRoles((target,), calendar=False, time_column=time_column)
    if track == "MS":
        return ColumnRoles((target,), others, calendar=False, time_column=time_column)
    return ColumnRoles(tuple(columns), calendar=False, time_column=time_column)


def ett_roles(track: str, target: str = "OT") -> ColumnRoles:
    """Column roles of a track on the 7 ETT columns (see `track_roles`).

    Args:
        track: 'U', 'MS' or 'M'.
        target: the target column of tracks U and MS.
    """
    return track_roles(track, ETT_COLUMNS, target)


def dataset_bundle(
    dataset: str | DatasetSpec,
    source: str | Path | pd.DataFrame,
    track: str,
    input_length: int,
    horizon: int,
) -> DataBundle:
    """A registered dataset windowed by its own protocol (the `split` of its TOML: the
    Informer borders for ETT, 70/10/20 row fractions for the others), with its cleaning
    rules, a global z-score on training rows and every test window at stride 1.

    Args:
        dataset: registered name or a `DatasetSpec`.
        source: path of the CSV (or its frame).
        track: 'U', 'MS' or 'M' (target: the dataset's first default target).
        input_length: L.
        horizon: H.
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset_spec(dataset)
    # Bytes that are not UTF-8 (a unit sign in weather.csv) become U+FFFD, as in the registry.
    df = (
        source
        if isinstance(source, pd.DataFrame)
        else pd.read_csv(source, encoding_errors="replace")
    )
    return prepare_data(
        df,
        track_roles(track, spec.columns, spec.targets[0], spec.time_column),
        input_length=input_length,
        horizon=horizon,
        split=spec.split_spec(),
        scaling="global",
        period=spec.seasonal_period,
        gaps=spec.gaps,
        drop_duplicates=spec.drop_duplicate_rows,
    )


def ett_bundle(
    source: str | Path | pd.DataFrame,
    track: str,
    input_length: int,
    horizon: int,
    *,
    minute: bool = False,
) -> DataBundle:
    """An ETT file windowed exactly as the literature does: 12/4/4-month borders, global
    z-score on training rows (population std), every test window at stride 1.

    Args:
        source: path of the CSV (or its frame).
        track: 'U', 'MS' or 'M'.
        input_length: L.
        horizon: H.
        minute: the 15-minute ETTm files (borders x 4).
    """
    df = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
    split = SplitSpec("ett_minute" if minute else "ett_hour")
    return prepare_data(
        df,
        ett_roles(track),
        input_length=input_length,
        horizon=horizon,
        split=split,
        scaling="global",
    )
