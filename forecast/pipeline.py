"""Forecasts a user can act on: a fitted model plus everything needed to go from a raw
DataFrame to forecasts in original units, with real future timestamps.

A `Pipeline` holds the model, the scaler fitted on the training rows, the column roles
(with the calendar features resolved at training), the frequency, the data options
(gaps, fill, duplicates) and the config. It reuses the toolkit's own steps: the frame is
validated by `prepare_frame`, scaled by the stored `StandardScaler`, and sliced by
`WindowDataset`, so a forecast is computed exactly as the test windows were.

>>> import numpy as np, pandas as pd
>>> from forecast import ColumnRoles, prepare_data, create_model
>>> df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=200, freq="h"),
...                    "y": np.arange(200.0)})
>>> roles = ColumnRoles(("y",), calendar=False)
>>> data = prepare_data(df, roles, input_length=24, horizon=4)
>>> pipe = Pipeline.from_bundle(create_model("drift", data.layout), data, roles)
>>> pipe.forecast(df)["y"].round(3).tolist()
[200.0, 201.0, 202.0, 203.0]

`pipe.save(path)` writes it as one file (see `forecast.checkpoint`); `load(path)` (also
`forecast.load`) rebuilds it without running any code from the file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from forecast.checkpoint import CheckpointError, read_model, save_checkpoint
from forecast.data.calendar import calendar_features
from forecast.data.frame import STEP, ColumnRoles, SeriesFrame, is_step_index, prepare_frame
from forecast.data.prepare import DataBundle
from forecast.data.scaling import StandardScaler
from forecast.data.split import part_starts
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.evaluate import predict_dataset, predictions_frame
from forecast.intervals import ConformalIntervals, window_scale
from forecast.models.base import Forecaster

FRAME_OPTIONS = ("fill", "gaps", "drop_duplicates")
"""`prepare_frame` keywords a pipeline applies to new data as it did to the training data."""


def artifact_path(run_dir: str | Path, model: str, seed: int) -> Path:
    """Where a run folder keeps the saved pipeline of one (model, seed).

    Args:
        run_dir: the run folder.
        model: the model's registry name.
        seed: the seed.
    """
    return Path(run_dir) / "models" / f"{model}_seed{seed}.pt"


def forecast_frame(
    series: np.ndarray,
    times: np.ndarray,
    targets: list[str],
    values: np.ndarray,
    series_column: str | None,
) -> pd.DataFrame:
    """The forecast table: [series id column if any, 'time', one column per target].

    Args:
        series: [N] series id of each forecast origin.
        times: [N, H] timestamps of the forecast steps.
        targets: target names.
        values: [N, H, targets] forecasts in original units.
        series_column: name of the series-id column; None for one series.
    """
    n, h, _ = values.shape
    columns: dict[str, Any] = {}
    if series_column is not None:
        columns[series_column] = np.repeat(np.asarray(series, dtype=object), h)
    columns["time"] = np.asarray(times).reshape(-1)
    for c, name in enumerate(targets):
        columns[name] = values[:, :, c].reshape(-1)
    return pd.DataFrame(columns)


@dataclass
class Pipeline:
    """A fitted model with its scaler, column roles, frequency and data options.

    Args:
        model: a fitted forecaster (its `layout` is the window layout).
        scaler: the scaler fitted on the training rows.
        roles: column roles; `calendar` is the resolved list of cycles (or False).
        freq: the data's frequency (`STEP` for an integer step index).
        series_ids: the training series, in the scaler's order.
        options: `prepare_frame` options (`FRAME_OPTIONS`) used for the training data.
        columns: the training frame's columns; a frame with other columns is refused.
            None checks only the columns the model uses.
        config: the experiment config (plain data), for reference.
    """

    model: Forecaster
    scaler: StandardScaler
    roles: ColumnRoles
    freq: str
    series_ids: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    columns: list[str] | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> WindowLayout:
        """Input length, horizon and column roles of the model's windows."""
        return self.model.layout

    @classmethod
    def from_bundle(
        cls,
        model: Forecaster,
        bundle: DataBundle,
        roles: ColumnRoles,
        *,
        options: dict[str, Any] | None = None,
        columns: list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Pipeline:
        """The pipeline of a model fitted on `bundle` (from `prepare_data(df, roles)`).

        Args:
            model: the fitted forecaster.
            bundle: the data it was fitted on.
            roles: the roles given to `prepare_data`.
            options: the `prepare_data` keywords used (only `FRAME_OPTIONS` are kept).
            columns: the training frame's columns (to refuse frames with other columns).
            config: the experiment config, stored for reference.
        """
        calendar = list(bundle.frame.meta.get("calendar", []))
        resolved = dataclasses.replace(roles, calendar=tuple(calendar) if calendar else False)
        opts = {k: v for k, v in (options or {}).items() if k in FRAME_OPTIONS}
        return cls(
            model,
            bundle.scaler,
            resolved,
            bundle.frame.freq,
            list(bundle.frame.series_ids),
            opts,
            None if columns is None else [str(c) for c in columns],
            dict(config or {}),
        )

    # ------------------------------------------------------------------ data
    def _check_columns(self, df: pd.DataFrame, what: str = "the frame") -> None:
        """One clear line when `df`'s columns are not the training frame's."""
        r = self.roles
        have = [str(c) for c in df.columns]
        used = [*r.targets, *r.past_covariates, *r.known_covariates]
        used += [c for c in (r.time_column, r.series_id) if c is not None]
        expected = self.columns if self.columns is not None else used
        missing = [c for c in expected if c not in have]
        if missing:
            raise ValueError(
                f"{what} lacks column(s) {missing} the model was trained with "
                f"(training columns {expected}, given {have})"
            )
        extra = [c for c in have if c not in expected] if self.columns is not None else []
        if extra:
            raise ValueError(
                f"{what} has column(s) {extra} that the training data did not have "
                f"(training columns {expected}); drop them"
            )
        if r.time_column is not None and (self.freq == STEP) != is_step_index(df[r.time_column]):
            kind = "an integer step index" if self.freq == STEP else "dates"
            raise ValueError(
                f"time column {r.time_column!r} of {what} does not hold {kind} as the "
                "training data did"
            )

    def _frame(self, df: pd.DataFrame) -> SeriesFrame:
        """`df` validated as the training data was (calendar features included)."""
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
        self._check_columns(df)
        return prepare_frame(df, self.roles, freq=self.freq, **self.options)

    def _scaler_for(self, frame: SeriesFrame) -> StandardScaler:
        """The training scaler with one row of statistics per series of `frame`; per-series
        statistics exist only for the training series (matched by id)."""
        if self.scaler.mode != "per_series":
            return self.scaler
        index = {sid: i for i, sid in enumerate(self.series_ids)}
        unknown = [s for s in frame.series_ids if s not in index]
        if unknown:
            raise ValueError(
                f"series {unknown} were not in the training data: per-series scaling has "
                f"statistics for series {self.series_ids} only"
            )
        rows = [index[s] for s in frame.series_ids]
        aligned = StandardScaler(self.scaler.mode)
        aligned.mean_, aligned.std_ = self.scaler.mean_[rows], self.scaler.std_[rows]
        return aligned

    @staticmethod
    def _scale(
        values: np.ndarray, bounds: np.ndarray, n_scaled: int, scaler: StandardScaler
    ) -> None:
        """Scale each series' rows of `values` in place, as `prepare_data` does."""
        if scaler.mode == "none":
            return
        for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            scaler.transform_(values[lo:hi, :n_scaled], s)

    def _check_length(self, frame: SeriesFrame, need: int, what: str) -> None:
        for sid, n in zip(frame.series_ids, frame.lengths()):
            if n < need:
                where = f"series {sid!r}" if sid else "the frame"
                raise ValueError(f"{where} has {n} rows, shorter than the {what} = {need}")

    def prepare(self, df: pd.DataFrame, *, stride: int = 1) -> DataBundle:
        """`df` validated and scaled with the training scaler, every complete window (at
        `stride`) in the `test` part; `train` and `val` are None and the borders (0, 0, n)
        say every row is a test row.

        Args:
            df: a frame with the training frame's columns (one or many series).
            stride: step between windows.
        """
        return self._bundle(self._frame(df), stride)

    def _bundle(self, frame: SeriesFrame, stride: int = 1) -> DataBundle:
        """`prepare` of an already validated frame (its values are scaled in place)."""
        lay = self.layout
        span = lay.input_length + lay.horizon
        self._check_length(
            frame, span, f"input length + horizon {lay.input_length} + {lay.horizon}"
        )
        scaler = self._scaler_for(frame)
        self._scale(frame.values, frame.bounds, frame.n_scaled, scaler)
        borders = [(0, 0, int(n)) for n in frame.lengths()]
        starts = [
            part_starts(b, "test", lay.input_length, lay.horizon, stride) + frame.bounds[s]
            for s, b in enumerate(borders)
        ]
        sidx = [np.full(len(st), s, dtype=np.int32) for s, st in enumerate(starts)]
        ds = WindowDataset(
            torch.from_numpy(frame.values), np.concatenate(starts), lay, np.concatenate(sidx)
        )
        return DataBundle(frame, scaler, lay, borders, None, None, ds)  # type: ignore[arg-type]

    def predict_windows(self, df: pd.DataFrame, *, stride: int = 1) -> pd.DataFrame:
        """Every window of `df` predicted, in original units, as `evaluate` scores them.

        Columns: series, origin_time, step, time, target, actual, prediction (as
        `forecast.evaluate.predictions_frame`).

        Args:
            df: a frame with the training frame's columns.
            stride: step between windows.
        """
        bundle = self.prepare(df, stride=stride)
        return predictions_frame(predict_dataset(self.model, bundle.test), bundle, bundle.test)

    # -------------------------------------------------------------- forecasts
    def future_times(self, last: Any, frame_times: np.ndarray) -> np.ndarray:
        """The H timestamps after `last` at the data's frequency.

        Args:
            last: the series' last timestamp.
            frame_times: the series' timestamps (the step of an integer index).
        """
        h = self.layout.horizon
        if self.freq == STEP:
            diffs = np.diff(frame_times.astype(np.int64))
            step = int(pd.Series(diffs).mode().iloc[0]) if len(diffs) else 1
            return int(last) + step * np.arange(1, h + 1, dtype=np.int64)
        times = pd.date_range(pd.Timestamp(last), periods=h + 1, freq=self.freq)[1:]
        return times.to_numpy(dtype="datetime64[ns]")

    def _future_known(
        self, future: pd.DataFrame | None, sid: str, times: np.ndarray
    ) -> np.ndarray | None:
        """[H, user known covariates] for one series' future `times`, from `future`."""
        r = self.roles
        names = list(r.known_covariates)
        if not names:
            return None
        where = f" of series {sid!r}" if sid else ""
        first = pd.Timestamp(times[0]) if self.freq != STEP else int(times[0])
        if future is None:
            raise ValueError(
                f"known covariate(s) {names} are needed for the {len(times)} steps{where} "
                f"from {first}: pass future= (--future FILE) with columns "
                f"{[c for c in (r.time_column, r.series_id) if c] + names}"
            )
        if not isinstance(future, pd.DataFrame):
            raise ValueError(f"future must be a pandas DataFrame, got {type(future).__name__}")
        need = [c for c in (*names, r.time_column, r.series_id) if c is not None]
        missing = [c for c in need if c not in future.columns]
        if missing:
            raise ValueError(
                f"the future frame lacks column(s) {missing}; it has {list(future.columns)}"
            )
        rows = future if r.series_id is None else future[future[r.series_id].astype(str) == sid]
        stamps = rows.index if r.time_column is None else rows[r.time_column]
        if self.freq == STEP:
            index = pd.Index(np.asarray(stamps, dtype=np.int64))
        else:
            try:
                index = pd.DatetimeIndex(pd.to_datetime(stamps))
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"the future frame's timestamps could not be parsed: {err}"
                ) from None
        table = pd.DataFrame(rows[names].to_numpy(), index=index, columns=names)
        table = table[~table.index.duplicated(keep="last")]
        wanted = pd.Index(times) if self.freq == STEP else pd.DatetimeIndex(times)
        absent = wanted.difference(table.index)
        if len(absent):
            shown = ", ".join(str(t) for t in absent[:3]) + (", ..." if len(absent) > 3 else "")
            raise ValueError(
                f"the future frame lacks {len(absent)} of the {len(times)} timestamps{where} "
                f"to forecast: {shown}"
            )
        values = table.loc[wanted].copy()
        for col in names:
            numeric = pd.to_numeric(values[col], errors="coerce")
            if numeric.isna().any():
                at = values.index[int(np.flatnonzero(numeric.isna().to_numpy())[0])]
                raise ValueError(
                    f"known covariate {col!r}{where} in the future frame is missing or not "
                    f"numeric at {at}"
                )
            values[col] = numeric
        return values.to_numpy(dtype=np.float32)

    def forecast(
        self,
        df: pd.DataFrame,
        future: pd.DataFrame | None = None,
        *,
        coverage: float | None = None,
        calibration_windows: int = 1000,
    ) -> pd.DataFrame:
        """Forecast the H steps after each series' last row, in original units.

        Calendar features of those steps are built from their timestamps; user-supplied
        known covariates come from `future` (rows for those timestamps; other rows are
        ignored). With `coverage`, split-conformal bounds are added (see `interval`).

        Args:
            df: the history, with the training frame's columns (one or many series); at
                least `input_length` rows per series (`input_length + horizon` and more
                with `coverage`: the intervals are calibrated on its complete windows).
            future: time column (and series id) plus the known covariates for the steps to
                forecast; needed only when the model has user known covariates.
            coverage: e.g. 0.8 adds `<target>_lower` and `<target>_upper` columns.
            calibration_windows: most recent complete windows per series to calibrate on.

        Returns:
            One block of H rows per series: [series id column if any, 'time', targets
            (and their bounds)].
        """
        frame = self._frame(df)
        lay = self.layout
        L, H = lay.input_length, lay.horizon
        self._check_length(frame, L, "input length")
        scaler = self._scaler_for(frame)
        n_user = len(frame.known_covariates) - len(frame.calendar_columns)
        k0 = lay.n_targets + lay.n_past  # first known-covariate column
        blocks, times = [], []
        for s, (lo, hi) in enumerate(zip(frame.bounds[:-1], frame.bounds[1:])):
            sid = frame.series_ids[s]
            future_t = self.future_times(frame.timestamps[hi - 1], frame.timestamps[lo:hi])
            block = np.full((L + H, frame.values.shape[1]), np.nan, dtype=np.float32)
            block[:L] = frame.values[hi - L : hi]
            known = self._future_known(future, sid, future_t)
            if known is not None:
                block[L:, k0 : k0 + n_user] = known
            if frame.calendar_columns:
                cal = calendar_features(pd.DatetimeIndex(future_t), list(self.roles.calendar))
                block[L:, k0 + n_user :] = cal.to_numpy(dtype=np.float32)
            blocks.append(block)
            times.append(future_t)
        values = np.concatenate(blocks)
        bounds = np.arange(frame.n_series + 1, dtype=np.int64) * (L + H)
        self._scale(values, bounds, frame.n_scaled, scaler)
        series_index = np.arange(frame.n_series, dtype=np.int32)
        ds = WindowDataset(torch.from_numpy(values), bounds[:-1], lay, series_index)
        pred = predict_dataset(self.model, ds).prediction
        original = scaler.inverse(pred, series_index, slice(0, lay.n_targets))
        table = forecast_frame(
            np.asarray(frame.series_ids, dtype=object),
            np.stack(times),
            list(lay.targets),
            original,
            self.roles.series_id,
        )
        if coverage is None:
            return table
        radius = self._radius(frame, coverage, calibration_windows) * window_scale(ds)
        for bound, sign in (("lower", -1.0), ("upper", 1.0)):
            values = scaler.inverse(pred + sign * radius, series_index, slice(0, lay.n_targets))
            for c, name in enumerate(lay.targets):
                table[f"{name}_{bound}"] = values[:, :, c].reshape(-1)
        return table

    def interval_radius(
        self, df: pd.DataFrame, coverage: float, calibration_windows: int = 1000
    ) -> np.ndarray:
        """[H, targets] split-conformal radius (scaled units, per unit of a window's
        volatility) at `coverage`, from the most recent complete windows of `df`: the
        errors this model makes on the series it is asked to forecast, scaled by each
        window's mean absolute step, as the run's default intervals (`forecast.intervals`).

        Args:
            df: the history (needs `input_length + horizon` rows per series).
            coverage: the coverage wanted, in (0, 1).
            calibration_windows: most recent windows per series used.
        """
        return self._radius(self._frame(df), coverage, calibration_windows)

    def _radius(self, frame: SeriesFrame, coverage: float, calibration_windows: int) -> np.ndarray:
        """`interval_radius` of an already validated frame (scaled in place)."""
        if calibration_windows < 1:
            raise ValueError(f"calibration_windows must be >= 1, got {calibration_windows}")
        known = self._bundle(frame).test
        keep = np.concatenate(
            [
                np.flatnonzero(known.series_index == s)[-calibration_windows:]
                for s in np.unique(known.series_index)
            ]
        )
        windows = known.subset(keep)
        preds = predict_dataset(self.model, windows)
        cal = ConformalIntervals.calibrate(preds, windows, coverages=(coverage,), rolling=False)
        return cal.radius[0]

    # ------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """Everything but the model and the scaler, as plain (JSON) data."""
        roles = dataclasses.asdict(self.roles)
        roles["calendar"] = list(roles["calendar"]) if roles["calendar"] else False
        return {
            "roles": roles,
            "freq": self.freq,
            "series_ids": list(self.series_ids),
            "options": dict(self.options),
            "columns": self.columns,
            "config": self.config,
        }

    def save(self, path: str | Path) -> Path:
        """Write the pipeline as one checkpoint file, atomically (see `load`).

        Args:
            path: destination file; its folder is created.
        """
        meta = json.loads(json.dumps(self.metadata(), default=str))
        return save_checkpoint(self.model, path, scaler=self.scaler, pipeline=meta)


def load(path: str | Path, device: str | None = None) -> Pipeline:
    """A saved pipeline, ready to forecast (`forecast.load`).

    The file is read as plain data (`torch.load(weights_only=True)`) after its SHA-256 is
    checked; only registered model classes are rebuilt. A damaged file, a foreign class or
    a checkpoint without pipeline data raises a `CheckpointError` naming the file.

    Args:
        path: a file written by `Pipeline.save` (a run folder's `models/<name>_seed<k>.pt`).
        device: where to put a torch model's network; None uses the saved config's.
    """
    model, payload = read_model(path, device=device)
    raw = payload.get("pipeline")
    if not isinstance(raw, dict) or payload.get("scaler") is None:
        raise CheckpointError(
            f"{path}: holds a model but no pipeline (scaler, column roles, frequency); "
            "load it with forecast.checkpoint.load_checkpoint"
        )
    roles = dict(raw["roles"])
    roles["calendar"] = tuple(roles["calendar"]) if roles["calendar"] else False
    return Pipeline(
        model,
        StandardScaler.from_state_dict(payload["scaler"]),
        ColumnRoles(**roles),
        str(raw["freq"]),
        list(raw["series_ids"]),
        dict(raw.get("options") or {}),
        raw.get("columns"),
        dict(raw.get("config") or {}),
    )
