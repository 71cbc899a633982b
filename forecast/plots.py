"""Result plots: data in, (Figure, data behind it) out. Never shows a window."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def forecast_plot(
    predictions: dict[str, pd.DataFrame],
    *,
    target: str,
    n_origins: int = 3,
    series: str | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Actuals over the test period with whole-horizon forecasts from a few origins.

    Args:
        predictions: model name -> tidy frame from `forecast.evaluate.predictions_frame`.
        target: which target column to draw.
        n_origins: how many forecast origins, spread evenly over the test period.
        series: which series (the first by default).
    """
    first = next(iter(predictions.values()))
    rows = first[first["target"] == target]
    series = series if series is not None else rows["series"].iloc[0]
    rows = rows[rows["series"] == series]
    actual = rows.drop_duplicates("time").sort_values("time")[["time", "actual"]]
    origins = np.sort(rows["origin_time"].unique())
    # Skip the first fifth: those origins have no test actuals before them to show.
    first_shown = len(origins) // 5
    picked = origins[np.linspace(first_shown, len(origins) - 1, n_origins).round().astype(int)]

    horizon = int(rows["step"].max())
    fig = Figure(figsize=(11, 2.6 * len(picked)))
    axes = np.atleast_1d(fig.subplots(len(picked), 1))
    data = []
    for ax, origin in zip(axes, picked):
        # Context: three horizons of history before the origin, then the horizon itself.
        times = actual["time"].to_numpy()
        pos = int(np.searchsorted(times, origin))
        ctx = actual.iloc[max(0, pos - 3 * horizon) : pos + horizon + 1]
        ax.plot(ctx["time"], ctx["actual"], color="black", lw=1.0, label="actual")
        data.append(ctx.assign(kind="actual", model="", origin_time=origin))
        for i, (name, frame) in enumerate(predictions.items()):
            sel = frame[
                (frame["target"] == target)
                & (frame["series"] == series)
                & (frame["origin_time"] == origin)
            ]
            ax.plot(sel["time"], sel["prediction"], color=f"C{i}", lw=1.5, label=name)
            data.append(
                sel[["time", "prediction"]]
                .rename(columns={"prediction": "actual"})
                .assign(kind="forecast", model=name, origin_time=origin)
            )
        ax.axvline(origin, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(f"{target}")
        ax.set_title(f"origin {pd.Timestamp(origin)}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8, ncols=3)
    where = f" (series {series})" if series else ""
    fig.suptitle(f"Test forecasts vs actuals for {target}{where}, original units")
    axes[-1].set_xlabel("time (dotted line: forecast origin)")
    fig.autofmt_xdate()
    table = pd.concat(data, ignore_index=True).rename(columns={"actual": "value"})
    return fig, table


def horizon_error_plot(per_horizon: pd.DataFrame, *, metric: str = "mse") -> Figure:
    """Error per forecast step for each model.

    Args:
        per_horizon: columns model, step, and the metric.
        metric: which column to draw.
    """
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name, part in per_horizon.groupby("model", sort=False):
        ax.plot(part["step"], part[metric], marker=".", label=name)
    ax.set_title(f"Test {metric.upper()} per forecast step (scaled units)")
    ax.set_xlabel("forecast step (rows after the origin)")
    ax.set_ylabel(metric.upper())
    ax.legend(fontsize=8, ncols=2)
    return fig
