"""Chronological train / validation / test splits.

A split is three row borders per series: train rows are [0, b1), validation [b1, b2),
test [b2, b3). A validation or test window may look back into the previous part for its
input, but its targets never leave its own part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

SplitKind = Literal["fractions", "borders", "timestamps", "ett_hour", "ett_minute"]
PRESETS = {
    # The long-term forecasting protocol (Informer, Autoformer, DLinear, ...):
    # 12 months train, 4 validation, 4 test, 30-day months; rows past 20 months unused.
    "ett_hour": (12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24),
    "ett_minute": (12 * 30 * 96, 16 * 30 * 96, 20 * 30 * 96),
}


@dataclass(frozen=True)
class SplitSpec:
    """How to cut each series in time.

    Args:
        kind: 'fractions' (train/val/test fractions, rounded down as in the literature),
            'borders' (row indices), 'timestamps' (first validation / test timestamps and,
            optionally, the end), or a named preset 'ett_hour' / 'ett_minute'.
        fractions: for 'fractions'; must sum to at most 1.
        borders: for 'borders': (train_end, val_end) or (train_end, val_end, test_end).
        timestamps: for 'timestamps': (val_start, test_start) or (..., test_end_exclusive).

    >>> SplitSpec("fractions", fractions=(0.7, 0.1, 0.2)).borders_for(100)
    (70, 80, 100)
    >>> SplitSpec("ett_hour").borders_for(17420)
    (8640, 11520, 14400)
    """

    kind: SplitKind = "fractions"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    borders: tuple[int, ...] = ()
    timestamps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("fractions", "borders", "timestamps", *PRESETS):
            raise ValueError(
                f"unknown split kind {self.kind!r}; expected 'fractions', 'borders', "
                f"'timestamps' or a preset in {sorted(PRESETS)}"
            )
        if self.kind == "fractions":
            fr = tuple(float(f) for f in self.fractions)
            if len(fr) != 3 or any(f < 0 for f in fr) or sum(fr) > 1 + 1e-9 or fr[0] == 0:
                raise ValueError(
                    f"split fractions must be three non-negative numbers, train > 0, summing "
                    f"to at most 1; got {self.fractions}"
                )
        if self.kind == "borders" and len(self.borders) not in (2, 3):
            raise ValueError(f"split borders need 2 or 3 row indices, got {self.borders}")
        if self.kind == "timestamps" and len(self.timestamps) not in (2, 3):
            raise ValueError(f"split timestamps need 2 or 3 values, got {self.timestamps}")

    def borders_for(self, n_rows: int, times: np.ndarray | None = None) -> tuple[int, int, int]:
        """Row borders (train_end, val_end, test_end) for a series of `n_rows` rows.

        Args:
            n_rows: length of the series.
            times: its timestamps; needed for kind 'timestamps'.
        """
        if self.kind == "fractions":
            n_train = int(n_rows * self.fractions[0])
            n_test = int(n_rows * self.fractions[2])
            n_val = int(round(n_rows * sum(self.fractions))) - n_train - n_test
            b = (n_train, n_train + n_val, n_train + n_val + n_test)
        elif self.kind == "timestamps":
            if times is None:
                raise ValueError("split kind 'timestamps' needs the series' timestamps")
            if np.issubdtype(np.asarray(times).dtype, np.integer):  # a step index
                try:
                    stamps = np.array([int(t) for t in self.timestamps], dtype=np.int64)
                except ValueError:
                    raise ValueError(
                        f"split timestamps {list(self.timestamps)} must be integers: the time "
                        "column is a step index"
                    ) from None
            else:
                try:
                    stamps = pd.to_datetime(list(self.timestamps)).to_numpy(dtype="datetime64[ns]")
                except (ValueError, TypeError):
                    raise ValueError(
                        f"split timestamps {list(self.timestamps)} are not dates"
                    ) from None
            cut = np.searchsorted(times, stamps, side="left")
            b = (int(cut[0]), int(cut[1]), int(cut[2]) if len(cut) == 3 else n_rows)
        else:
            raw = PRESETS.get(self.kind, self.borders)
            b = (int(raw[0]), int(raw[1]), int(raw[2]) if len(raw) == 3 else n_rows)
            if b[2] > n_rows:
                raise ValueError(
                    f"split {self.kind!r} needs {b[2]} rows but the series has {n_rows}"
                )
        if not 0 < b[0] <= b[1] <= b[2] <= n_rows:
            raise ValueError(
                f"split borders {b} are not increasing within the series' {n_rows} rows"
            )
        return b


def part_range(
    borders: tuple[int, int, int], part: str, input_length: int, horizon: int, stride: int = 1
) -> tuple[int, int]:
    """(first start row, number of windows) of one part of one series; the windows start
    at first, first + stride, ... (`part_starts`).

    Args:
        borders: (train_end, val_end, test_end) rows of the series.
        part: 'train', 'val' or 'test'.
        input_length: encoder length L.
        horizon: forecast length H.
        stride: step between consecutive windows.
    """
    lo, hi = {"train": (0, borders[0]), "val": borders[:2], "test": borders[1:]}[part]
    first = max(0, lo - input_length)
    last = hi - input_length - horizon  # inclusive
    return first, 0 if last < first else (last - first) // stride + 1


def part_starts(
    borders: tuple[int, int, int], part: str, input_length: int, horizon: int, stride: int = 1
) -> np.ndarray:
    """Window start rows (first input row) of one part of one series.

    Args:
        borders: (train_end, val_end, test_end) rows of the series.
        part: 'train', 'val' or 'test'.
        input_length: encoder length L.
        horizon: forecast length H.
        stride: step between consecutive windows.
    """
    first, count = part_range(borders, part, input_length, horizon, stride)
    return first + stride * np.arange(count, dtype=np.int64)
