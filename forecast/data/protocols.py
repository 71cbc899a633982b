"""The long-term forecasting benchmark protocol (see docs and ../shared/DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecast.data.frame import ColumnRoles
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.split import SplitSpec

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
TRACKS = ("U", "MS", "M")


def ett_roles(track: str, target: str = "OT") -> ColumnRoles:
    """Column roles of a track: U = target only; MS = all 7 in, target out; M = 7 in, 7 out.

    Args:
        track: 'U', 'MS' or 'M'.
        target: the target column of tracks U and MS.
    """
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; expected one of {list(TRACKS)}")
    others = tuple(c for c in ETT_COLUMNS if c != target)
    if track == "U":
        return ColumnRoles((target,), calendar=False)
    if track == "MS":
        return ColumnRoles((target,), others, calendar=False)
    return ColumnRoles(ETT_COLUMNS, calendar=False)


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
