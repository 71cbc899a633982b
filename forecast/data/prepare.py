"""From a frame to scaled train / validation / test windows, in one call."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from forecast.data.calendar import default_calendar, seasonal_period
from forecast.data.frame import (
    STEP,
    ColumnRoles,
    FillPolicy,
    GapPolicy,
    SeriesFrame,
    prepare_frame,
    with_calendar,
)
from forecast.data.scaling import StandardScaler
from forecast.data.split import SplitSpec, part_range
from forecast.data.windows import WindowDataset, WindowLayout

PARTS = ("train", "val", "test")
log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """Everything a model and an evaluation need: scaled data, scaler, windows per part."""

    frame: SeriesFrame  # values are scaled in place
    scaler: StandardScaler
    layout: WindowLayout
    borders: list[tuple[int, int, int]]  # per series: (train_end, val_end, test_end)
    train: WindowDataset
    val: WindowDataset | None
    test: WindowDataset

    def part(self, name: str) -> WindowDataset | None:
        """The windows of 'train', 'val' or 'test'."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_original(self, y: np.ndarray, ds: WindowDataset) -> np.ndarray:
        """Targets [N, H, targets] of `ds` from the scaled space to original units."""
        return self.scaler.inverse(y, ds.series_index, slice(0, self.layout.n_targets))

    def target_timestamps(self, ds: WindowDataset) -> np.ndarray:
        """[N, H] timestamps of every forecast target in `ds`."""
        return self.frame.timestamps[ds.target_rows()]

    def mase_scale(self, period: int | None = None) -> np.ndarray:
        """[S, targets] seasonal-naive MAE on each series' training rows (scaled units).

        z-scoring is affine per column, so MASE is the same in scaled and original units.
        """
        m = period or self.layout.period
        nt = self.layout.n_targets
        scales = []
        for s, (b0, _, _) in enumerate(self.borders):
            lo = int(self.frame.bounds[s])
            train = self.frame.values[lo : lo + b0, :nt].astype(np.float64)
            if len(train) <= m:
                raise ValueError(
                    f"MASE needs more than {m} training rows per series; series "
                    f"{self.frame.series_ids[s]!r} has {len(train)}"
                )
            scales.append(np.abs(train[m:] - train[:-m]).mean(axis=0))
        return np.maximum(np.stack(scales), 1e-12)


def _check_length(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def prepare_data(
    data: pd.DataFrame | SeriesFrame,
    roles: ColumnRoles | None = None,
    *,
    input_length: int,
    horizon: int,
    split: SplitSpec | None = None,
    scaling: str = "per_series",
    stride: int = 1,
    freq: str | None = None,
    fill: FillPolicy | None = None,
    period: int | None = None,
    copy: bool = True,
    gaps: GapPolicy = "error",
    drop_duplicates: bool = False,
) -> DataBundle:
    """Validate, split chronologically, scale on training rows only, and window.

    Args:
        data: a DataFrame (with `roles`) or an already validated `SeriesFrame`; a
            SeriesFrame is copied before scaling, a DataFrame's converted copy is scaled
            in place.
        roles: column roles; required for a DataFrame.
        input_length: encoder length L.
        horizon: forecast length H.
        split: how to cut each series; 70/10/20 fractions by default.
        scaling: 'per_series', 'global' or 'none'.
        stride: step between evaluation windows (training always uses every window).
        freq: frequency alias; inferred when None.
        fill: NaN fill policy, see `prepare_frame`.
        period: seasonal period in rows; derived from the frequency when None (1 for an
            integer step index).
        copy: for a SeriesFrame, scale a copy (default) or its own array in place, which
            keeps peak memory at one copy of the series for very long data.
        gaps: missing timestamps: 'error', 'fill' (with `fill`) or 'keep', see
            `prepare_frame`.
        drop_duplicates: drop exact duplicate rows, see `prepare_frame`.
    """
    input_length = _check_length("input_length", input_length)
    horizon = _check_length("horizon", horizon)
    stride = _check_length("stride", stride)
    auto_calendar = False
    if isinstance(data, SeriesFrame):
        frame = SeriesFrame(**{**data.__dict__, "values": data.values.copy()}) if copy else data
    else:
        if roles is None:
            raise ValueError("prepare_data needs roles= (a ColumnRoles) for a DataFrame")
        # Automatic calendar features depend on the training period: added after the split.
        auto_calendar = roles.calendar is True
        base_roles = dataclasses.replace(roles, calendar=False) if auto_calendar else roles
        frame = prepare_frame(
            data, base_roles, freq=freq, fill=fill, gaps=gaps, drop_duplicates=drop_duplicates
        )
    split = split or SplitSpec()
    span = input_length + horizon

    borders = []
    for s, n in enumerate(frame.lengths()):
        sid = f" {frame.series_ids[s]!r}" if frame.series_ids[s] else ""
        if n < span:
            raise ValueError(
                f"series{sid} has {n} rows, shorter than input_length + horizon = "
                f"{input_length} + {horizon} = {span}"
            )
        lo = int(frame.bounds[s])
        borders.append(split.borders_for(int(n), frame.timestamps[lo : lo + n]))
    if auto_calendar and frame.freq != STEP:
        spans = [
            frame.timestamps[lo + b[0] - 1] - frame.timestamps[lo]
            for lo, b in zip(frame.bounds[:-1], borders)
        ]
        names = default_calendar(frame.freq, pd.Timedelta(max(spans)))
        log.info("calendar features %s (training part spans %s)", names, pd.Timedelta(max(spans)))
        frame = with_calendar(frame, names)

    n_scaled = frame.n_scaled
    scaler = StandardScaler(scaling)
    blocks = [frame.values[lo : lo + b[0], :n_scaled] for lo, b in zip(frame.bounds, borders)]
    scaler.fit(blocks, frame.columns[:n_scaled])
    if scaling != "none":
        for s, lo in enumerate(frame.bounds[:-1]):
            scaler.transform_(frame.values[lo : frame.bounds[s + 1], :n_scaled], s)

    layout = WindowLayout(
        input_length=input_length,
        horizon=horizon,
        targets=tuple(frame.targets),
        past_covariates=tuple(frame.past_covariates),
        known_covariates=tuple(frame.known_covariates),
        freq=frame.freq,
        period=period or seasonal_period(frame.freq),
    )
    tensor = torch.from_numpy(frame.values)  # shares memory with frame.values
    parts: dict[str, WindowDataset | None] = {}
    series = np.arange(frame.n_series, dtype=np.int32)
    for part in PARTS:
        part_stride = 1 if part == "train" else stride
        # One run of windows per series: a few numbers each, not one per window.
        firsts, counts = np.array(
            [part_range(b, part, input_length, horizon, part_stride) for b in borders],
            dtype=np.int64,
        ).T
        firsts += frame.bounds[:-1]
        if counts.sum() == 0 and part != "val":
            need = {"train": "train_end", "test": "test_end - val_end"}[part]
            raise ValueError(
                f"the {part} part has no complete window: it needs {need} >= "
                f"{'input_length + ' if part == 'train' else ''}horizon = "
                f"{span if part == 'train' else horizon} rows, got borders {borders[0]}"
            )
        parts[part] = (
            WindowDataset.from_runs(tensor, firsts, counts, part_stride, layout, series)
            if counts.sum()
            else None
        )
    return DataBundle(frame, scaler, layout, borders, parts["train"], parts["val"], parts["test"])
