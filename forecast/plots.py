"""Result plots: data in, (Figure, data behind it) out. Never shows a window."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _color(i: int) -> tuple:
    """Twenty distinct colours (tab20), so a dozen models never share one."""
    return mpl.colormaps["tab20"](i % 20)


def pick_origins(n: int, k: int) -> np.ndarray:
    """Positions of `k` forecast origins spread evenly over `n` (in time order), skipping
    the first fifth: those have no test actuals before them to show as context.

    Args:
        n: number of origins.
        k: how many to pick.
    """
    return np.unique(np.linspace(n // 5, n - 1, k).round().astype(int))


def plot_windows(
    origin: np.ndarray, series_index: np.ndarray, horizon: int, n_origins: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The windows the test forecast plot draws: `n_origins` picked origins of the first
    series (`pick_origins`) and the windows of the four horizons before each (their
    targets are the actuals shown as context).

    Args:
        origin: [N] origin row of every test window.
        series_index: [N] series of every test window.
        horizon: the forecast horizon H.
        n_origins: how many origins.

    Returns (window indices, the picked windows' indices), both ascending.
    """
    own = np.flatnonzero(series_index == series_index[0])  # the first series
    picked = own[pick_origins(len(own), n_origins)]
    near = np.zeros(len(own), dtype=bool)
    for j in picked:
        near |= (origin[own] >= origin[j] - 4 * horizon) & (origin[own] <= origin[j])
    return own[near], picked


def add_band(
    ax, time: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, color=None, label=None
) -> None:
    """Shade a prediction interval on `ax` (for the test and forward forecast plots).

    Args:
        ax: a matplotlib Axes.
        time: [H] x values.
        lower: [H] lower bounds.
        upper: [H] upper bounds.
        color: the band's colour (the forecast line's, usually).
        label: legend entry.
    """
    ax.fill_between(time, lower, upper, color=color, alpha=0.2, lw=0, label=label)


def forecast_plot(
    predictions: dict[str, pd.DataFrame],
    target: str,
    origins: np.ndarray | None = None,
    *,
    n_origins: int = 3,
    series: str | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Actuals over the test period with whole-horizon forecasts from a few origins.

    Args:
        predictions: model name -> tidy frame from `forecast.evaluate.predictions_frame`
            (every window, or those of `origins` and the horizons before them); with
            `lower` and `upper` columns, the interval is drawn as a band.
        target: which target column to draw.
        origins: the forecast origins (times) to draw; `n_origins` spread evenly over the
            test period when None.
        n_origins: how many origins when `origins` is None.
        series: which series (the first by default).
    """
    first = next(iter(predictions.values()))
    rows = first[first["target"] == target]
    series = series if series is not None else rows["series"].iloc[0]
    rows = rows[rows["series"] == series]
    actual = rows.drop_duplicates("time").sort_values("time")[["time", "actual"]]
    if origins is None:
        every = np.sort(rows["origin_time"].unique())
        origins = every[pick_origins(len(every), n_origins)]
    picked = np.asarray(origins)

    horizon = int(rows["step"].max())
    fig = Figure(figsize=(11, 2.6 * len(picked)))
    axes = np.atleast_1d(fig.subplots(len(picked), 1))
    data, banded = [], False
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
            if {"lower", "upper"} <= set(sel.columns):
                add_band(ax, sel["time"], sel["lower"], sel["upper"], color=f"C{i}")
                banded = True
            data.append(
                sel[[c for c in ("time", "prediction", "lower", "upper") if c in sel]]
                .rename(columns={"prediction": "actual"})
                .assign(kind="forecast", model=name, origin_time=origin)
            )
        ax.axvline(origin, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(f"{target}")
        ax.set_title(f"origin {pd.Timestamp(origin)}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8, ncols=3)
    where = f" (series {series})" if series else ""
    band = "; shaded: calibrated prediction interval" if banded else ""
    fig.suptitle(f"Test forecasts vs actuals for {target}{where}, original units{band}")
    axes[-1].set_xlabel("time (dotted line: forecast origin)")
    for ax in axes:  # fig.autofmt_xdate() would hide the dates of all but the last panel
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.75 / fig.get_figheight(), hspace=0.45)
    table = pd.concat(data, ignore_index=True).rename(columns={"actual": "value"})
    return fig, table


def _panels(names: list[str], groups: dict[str, str] | None) -> dict[str, list[str]]:
    """Panel title -> its models, in order of first appearance (one panel without groups)."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault((groups or {}).get(name, "models"), []).append(name)
    return out


def _style(i: int) -> dict:
    """Distinct colour and line style of the i-th line of a panel (10 colours x 3 styles)."""
    return {"color": f"C{i % 10}", "ls": ("-", "--", ":")[i // 10 % 3]}


def _faceted(n: int, sharey: bool, height: float = 2.6) -> tuple[Figure, np.ndarray]:
    """A figure of `n` stacked panels sharing the x axis, room on the right for legends."""
    fig = Figure(figsize=(8.5, height * n + 1.4))
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, sharey=sharey))
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.1, right=0.7, top=1 - 0.9 / h, bottom=0.5 / h, hspace=0.35)
    return fig, axes


def horizon_error_plot(
    per_horizon: pd.DataFrame, *, metric: str = "mse", groups: dict[str, str] | None = None
) -> Figure:
    """Error per forecast step for each model, one panel per group (e.g. model family)
    on a shared y axis, legends outside the axes.

    Args:
        per_horizon: columns model, step, and the metric.
        metric: which column to draw.
        groups: model -> panel title; one panel when None.
    """
    names = list(dict.fromkeys(per_horizon["model"]))
    panels = _panels(names, groups)
    fig, axes = _faceted(len(panels), sharey=True)
    for ax, (title, models) in zip(axes, panels.items()):
        for i, name in enumerate(models):
            part = per_horizon[per_horizon["model"] == name]
            ax.plot(part["step"], part[metric], lw=1.3, label=name, **_style(i))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(f"{metric.upper()} (scaled)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1].set_xlabel("forecast step (rows after the origin)")
    fig.suptitle(
        f"Test {metric.upper()} per forecast step (scaled units, mean over seeds; shared y axis)"
    )
    return fig


def leaderboard_plot(board: pd.DataFrame, *, metric: str = "mse") -> Figure:
    """Mean test error per model with its std over seeds; baselines in grey.

    Args:
        board: leaderboard with columns model, kind, the metric and `<metric>_std`.
        metric: which error to draw.
    """
    fig = Figure(figsize=(7, 0.35 * len(board) + 1.2))
    ax = fig.subplots()
    rows = board.iloc[::-1]  # best at the top
    std = rows.get(f"{metric}_std", pd.Series(0.0, index=rows.index)).fillna(0.0)
    colors = ["0.6" if k == "baseline" else "C0" for k in rows["kind"]]
    ax.barh(rows["model"], rows[metric], xerr=std, color=colors, capsize=2)
    ax.set_xlabel(f"test {metric.upper()} (scaled units), mean +- std over seeds")
    ax.set_title("Leaderboard (grey: baselines)")
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.25, right=0.97, top=1 - 0.4 / height, bottom=0.6 / height)
    return fig


def history_plot(
    histories: dict[str, pd.DataFrame], groups: dict[str, str] | None = None
) -> tuple[Figure, pd.DataFrame]:
    """Validation and training loss per epoch for each neural model, one panel per group
    (e.g. model family), legends outside the axes.

    Solid with dots: validation loss (free-running); dashed: training loss as trained
    (teacher-forced when `teacher_forcing` > 0); dotted: free-running training loss
    (`train_loss_free`), where the history has it.

    Args:
        histories: model name -> history frame (columns epoch, train_loss, val_loss,
            optionally train_loss_free).
        groups: model -> panel title; one panel when None.
    """
    panels = _panels(list(histories), groups)
    fig, axes = _faceted(len(panels), sharey=False)  # log scales of different ranges
    for ax, (title, models) in zip(axes, panels.items()):
        for i, name in enumerate(models):
            h, color = histories[name], f"C{i % 10}"
            ax.plot(h["epoch"], h["val_loss"], color=color, marker=".", label=name)
            ax.plot(h["epoch"], h["train_loss"], color=color, ls="--", lw=1)
            if "train_loss_free" in h and h["train_loss_free"].notna().any():
                ax.plot(h["epoch"], h["train_loss_free"], color=color, ls=":", lw=1.2)
        ax.set_yscale("log")
        ax.set_ylabel("MSE (scaled)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("epoch")
    fig.suptitle(
        "Validation loss (solid), training loss as trained (dashed; teacher-forced when "
        "forcing > 0)\nand free-running training loss (dotted)",
        fontsize=10,
    )
    data = pd.concat([h.assign(model=n) for n, h in histories.items()], ignore_index=True)
    return fig, data


def backtest_plot(folds: pd.DataFrame, *, metric: str = "mse") -> tuple[Figure, pd.DataFrame]:
    """Error per backtest fold for each model (mean over seeds).

    Args:
        folds: rows of (model, seed, fold, metrics).
        metric: which error to draw.
    """
    data = folds.groupby(["model", "fold"], sort=False)[metric].mean().reset_index()
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, (name, part) in enumerate(data.groupby("model", sort=False)):
        ax.plot(part["fold"], part[metric], marker="o", color=_color(i), label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("fold (successive blocks of test origins)")
    ax.set_ylabel(f"{metric.upper()} (scaled)")
    ax.set_title("Rolling-origin backtest")
    ax.legend(fontsize=8, ncols=2)
    return fig, data
