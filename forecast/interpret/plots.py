"""Attention figures: arrays in, `(Figure, data behind it)` out. Never shows a window.

Every figure has a title, labelled axes (feature names, real timestamps or lags in time
units) and a colour bar on heatmaps. Figures are `matplotlib.figure.Figure` objects, not
pyplot figures, so nothing is registered globally and nothing needs closing; save them
with `forecast.interpret.save_figure(fig, data, path)` (PNG + CSV).
"""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from forecast.data.windows import WindowLayout
from forecast.interpret._common import lag_axis
from forecast.interpret.collect import WindowAttention, feature_frame, temporal_frame

CMAP = "viridis"


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around evenly spaced centres (for pcolormesh)."""
    step = float(np.median(np.diff(centres))) if len(centres) > 1 else 1.0
    return np.concatenate([centres - step / 2, [centres[-1] + step / 2]])


def _date_edges(times: np.ndarray) -> np.ndarray:
    return _edges(mdates.date2num(pd.to_datetime(times).to_numpy()))


def _lag_label(layout: WindowLayout) -> str:
    _, _, unit = lag_axis(layout)
    return f"lag before the forecast origin ({unit})"


def top_k_rows(values: pd.DataFrame | pd.Series, top_k: int | None) -> pd.DataFrame | pd.Series:
    """Keep the `top_k` rows with the largest mean, sorted, the rest summed as 'other (n)'.

    Args:
        values: rows = features (a Series, or a DataFrame with one column per time step).
        top_k: rows to keep; None keeps all (still sorted).
    """
    score = values if isinstance(values, pd.Series) else values.mean(axis=1)
    order = score.sort_values(ascending=False, kind="stable").index
    values = values.loc[order]
    if top_k is None or len(values) <= top_k:
        return values
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    head, rest = values.iloc[:top_k], values.iloc[top_k:]
    other = rest.sum() if isinstance(values, pd.DataFrame) else pd.Series([rest.sum()])
    other.index = [f"other ({len(rest)})"] if isinstance(values, pd.Series) else other.index
    if isinstance(values, pd.Series):
        return pd.concat([head, other])
    return pd.concat([head, other.to_frame(f"other ({len(rest)})").T])


def plot_temporal_attention(
    weights: np.ndarray,
    layout: WindowLayout,
    *,
    title: str = "Mean temporal attention over the test windows",
    truth_positions: pd.DataFrame | None = None,
    value_label: str = "attention weight",
) -> tuple[Figure, pd.DataFrame]:
    """Heatmap of [H, L] attention: forecast step x lag (in time units) before the origin.

    Args:
        weights: [H, L] attention (e.g. `AttentionSummary.temporal_mean`).
        layout: lengths and frequency, for the lag axis.
        title: figure title.
        truth_positions: optional frame with columns step, true_position (from
            `true_positions`) marked on the map.
        value_label: colour bar label.
    """
    H, L = weights.shape
    _, lag_time, unit = lag_axis(layout)
    fig = Figure(figsize=(max(6.0, min(14.0, 0.12 * L + 4)), max(3.0, min(8.0, 0.3 * H + 2))))
    ax = fig.subplots()
    x = _edges(lag_time)  # decreasing: oldest lag first
    # Coloured relative to uniform attention (1 / L): white = uniform, red = more, blue =
    # less, so a flat map looks flat instead of showing its noise in full colour.
    ratio = np.asarray(weights, dtype=np.float64) * L
    top = max(2.0, float(np.nanmax(ratio)))
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top)
    mesh = ax.pcolormesh(x, np.arange(H + 1) + 0.5, ratio, cmap="RdBu_r", norm=norm)
    ax.set_xlim(x[0], x[-1])  # oldest on the left, the origin (lag 0) on the right
    ax.invert_yaxis()
    fig.colorbar(mesh, ax=ax, label=f"{value_label} x L (1 = uniform, 1/L = {1 / L:.3g})")
    if truth_positions is not None and len(truth_positions):
        t = truth_positions[truth_positions["true_position"] >= 0]
        x_true = lag_time[t["true_position"].to_numpy()]
        ax.scatter(x_true, t["step"], marker="x", color="red", label="true lag")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel(_lag_label(layout))
    ax.set_ylabel("forecast step (steps ahead)")
    ax.set_title(title)
    return fig, temporal_frame(weights, layout)


FOLD_ABOVE = 20
"""Feature maps and bars show every feature up to this many; beyond, the rest is summed."""


def plot_feature_map(
    values: np.ndarray,
    layout: WindowLayout,
    *,
    top_k: int | None = None,
    input_times: np.ndarray | None = None,
    title: str = "Mean feature attention over the test windows",
    value_label: str = "attention weight",
) -> tuple[Figure, pd.DataFrame]:
    """Heatmap of a feature x input time map [L, F] (feature attention, |gradients|, ...).

    Rows are sorted by their mean; with more than `FOLD_ABOVE` features, those beyond
    `top_k` (default `FOLD_ABOVE`) are summed into 'other (n)'.

    Args:
        values: [L, F] values, columns in `layout.encoder_features` order.
        layout: feature names, lengths and frequency.
        top_k: feature rows shown when there are more than `FOLD_ABOVE`; None: FOLD_ABOVE.
        input_times: [L] timestamps of one window (x axis in time); lags when None.
        title: figure title.
        value_label: colour bar label.
    """
    names = list(layout.encoder_features)
    table = pd.DataFrame(np.asarray(values).T, index=names)  # [F, L]
    shown = top_k_rows(table, None if len(names) <= FOLD_ABOVE else (top_k or FOLD_ABOVE))
    fig = Figure(figsize=(max(6.0, min(14.0, 0.12 * values.shape[0] + 4)), 1.2 + 0.35 * len(shown)))
    ax = fig.subplots()
    rows = np.arange(len(shown) + 1) - 0.5
    if input_times is not None:
        mesh = ax.pcolormesh(_date_edges(input_times), rows, shown.to_numpy(), cmap=CMAP)
        ax.xaxis_date()
        fig.autofmt_xdate()
        ax.set_xlabel("input time")
    else:
        _, lag_time, _ = lag_axis(layout)
        x = _edges(lag_time)
        mesh = ax.pcolormesh(x, rows, shown.to_numpy(), cmap=CMAP)
        ax.set_xlim(x[0], x[-1])  # oldest on the left
        ax.set_xlabel(_lag_label(layout))
    ax.set_yticks(np.arange(len(shown)), list(shown.index))
    ax.invert_yaxis()
    ax.set_ylabel("input feature")
    fig.colorbar(mesh, ax=ax, label=value_label)
    ax.set_title(title)
    return fig, feature_frame(np.asarray(values), layout, input_times=input_times, value="value")


def plot_window_attention(
    win: WindowAttention,
    *,
    features: list[str] | None = None,
    target: int = 0,
) -> tuple[Figure, pd.DataFrame]:
    """One window: its inputs on top, the temporal attention below on the same time axis,
    and the forecast vs the actual values beside it.

    Args:
        win: from `window_attention`.
        features: encoder features drawn above the map (scaled); by default the targets
            and up to two covariates with the highest feature attention in this window.
        target: which target the forecast panel shows.
    """
    if win.temporal is None:
        raise ValueError("this model returned no temporal attention for the window")
    lay = win.layout
    names = list(lay.encoder_features)
    if features is None:
        features = list(lay.targets)
        if win.feature is not None:
            covs = pd.Series(win.feature.mean(axis=0), index=names).drop(list(lay.targets))
            features += list(covs.sort_values(ascending=False).index[:2])
    unknown = [f for f in features if f not in names]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; encoder features are {names}")
    fig = Figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2], width_ratios=[4, 1.4], wspace=0.25)
    ax_in = fig.add_subplot(grid[0, 0])
    ax_map = fig.add_subplot(grid[1, 0], sharex=ax_in)
    ax_fc = fig.add_subplot(grid[:, 1])
    t_in = mdates.date2num(pd.to_datetime(win.input_times).to_numpy())
    for f in features:
        ax_in.plot(t_in, win.inputs[:, names.index(f)], lw=1.2, label=f)
    ax_in.set_ylabel("scaled value (z)")
    ax_in.set_title("inputs", fontsize=9)
    ax_in.legend(loc="upper left", fontsize=8, ncols=min(4, len(features)))
    ax_in.tick_params(labelbottom=False)
    H = win.temporal.shape[0]
    mesh = ax_map.pcolormesh(_edges(t_in), np.arange(H + 1) + 0.5, win.temporal, cmap=CMAP)
    ax_map.invert_yaxis()
    ax_map.xaxis_date()
    ax_map.set_xlabel("input time")
    ax_map.set_ylabel("forecast step (steps ahead)")
    fig.colorbar(mesh, ax=ax_map, orientation="horizontal", pad=0.25, label="attention weight")
    t_out = win.target_times
    ax_fc.plot(t_out, win.actual[:, target], color="black", marker=".", label="actual")
    ax_fc.plot(t_out, win.prediction[:, target], color="C3", marker=".", label="forecast")
    ax_fc.set_xlabel("target time")
    ax_fc.set_ylabel(f"{lay.targets[target]} (original units)")
    ax_fc.set_title("forecast vs actual", fontsize=9)
    ax_fc.legend(fontsize=8)
    ax_fc.tick_params(axis="x", labelrotation=45)
    for label in ax_map.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    origin = pd.Timestamp(win.input_times[-1])
    fig.suptitle(f"Temporal attention of test window {win.index} (forecast origin {origin})")
    att = temporal_frame(win.temporal, lay, input_times=win.input_times).assign(panel="attention")
    inp = pd.DataFrame(
        {
            "panel": "input",
            "input_time": np.repeat(win.input_times, len(features)),
            "feature": np.tile(features, len(win.input_times)),
            "weight": win.inputs[:, [names.index(f) for f in features]].reshape(-1),
        }
    ).rename(columns={"weight": "value"})
    fc = pd.DataFrame(
        {
            "panel": "forecast",
            "target_time": win.target_times,
            "step": np.arange(1, H + 1),
            "actual": win.actual[:, target],
            "prediction": win.prediction[:, target],
        }
    )
    return fig, pd.concat([att, inp, fc], ignore_index=True)


def plot_attention_over_time(
    by_origin: np.ndarray,
    origin_times: np.ndarray,
    layout: WindowLayout,
    *,
    max_columns: int = 1500,
    title: str = "Where the attention looks as the forecast origin moves",
) -> tuple[Figure, pd.DataFrame]:
    """Origin time on x, lag on y, colour = attention averaged over forecast steps.

    With more than `max_columns` origins, consecutive origins are averaged in equal bins
    (the CSV holds the binned values and says so in `n_origins`).

    Args:
        by_origin: [N, L] from `AttentionSummary.by_origin`.
        origin_times: [N] timestamps of the origins (sorted).
        layout: lengths and frequency.
        max_columns: most origin columns drawn.
        title: figure title.
    """
    N, L = by_origin.shape
    times = pd.to_datetime(np.asarray(origin_times)).to_numpy()
    if len(times) != N or (N > 1 and not (np.diff(times) > np.timedelta64(0)).all()):
        raise ValueError(
            f"origin_times must be {N} increasing timestamps (one series), got {len(times)} "
            "that are not strictly increasing"
        )
    n_bins = min(N, max_columns)
    bins = np.array_split(np.arange(N), n_bins)
    values = np.stack([by_origin[b].mean(axis=0) for b in bins])  # [bins, L]
    centres = np.array([times[b[len(b) // 2]] for b in bins])
    counts = np.array([len(b) for b in bins])
    lags, lag_time, unit = lag_axis(layout)
    fig = Figure(figsize=(12, 4.5))
    ax = fig.subplots()
    mesh = ax.pcolormesh(_date_edges(centres), _edges(lag_time), values.T, cmap=CMAP)
    ax.xaxis_date()
    fig.autofmt_xdate()
    ax.set_xlabel("forecast origin (time)")
    ax.set_ylabel(_lag_label(layout))
    fig.colorbar(mesh, ax=ax, label="attention weight (mean over steps)")
    ax.set_title(title)
    data = pd.DataFrame(
        {
            "origin_time": np.repeat(centres, L),
            "n_origins": np.repeat(counts, L),
            "position": np.tile(np.arange(L), n_bins),
            "lag": np.tile(lags, n_bins),
            "lag_time": np.tile(lag_time, n_bins),
            "lag_unit": unit,
            "weight": values.reshape(-1),
        }
    )
    return fig, data


def plot_attention_heads(
    maps: list[np.ndarray],
    *,
    query_label: str,
    key_label: str,
    title: str,
) -> tuple[Figure, pd.DataFrame]:
    """A grid of attention maps, one row per layer and one column per head.

    Args:
        maps: per layer, [heads, Q, K] mean attention (e.g. `AttentionSummary.heads[...]`).
        query_label: y axis label (e.g. 'forecast step').
        key_label: x axis label (e.g. 'encoder position (0 = oldest)').
        title: figure title.
    """
    if not maps:
        raise ValueError("no attention maps to draw: the list of layers is empty")
    n_layers, n_heads = len(maps), maps[0].shape[0]
    vmax = max(float(m.max()) for m in maps)
    fig = Figure(figsize=(2.6 * n_heads + 1.5, 2.3 * n_layers + 1), layout="constrained")
    axes = fig.subplots(n_layers, n_heads, squeeze=False, sharex=True, sharey=True)
    rows = []
    mesh = None
    for i, layer in enumerate(maps):
        for h in range(n_heads):
            ax: Axes = axes[i, h]
            mesh = ax.imshow(layer[h], aspect="auto", cmap=CMAP, vmin=0, vmax=vmax)
            ax.set_title(f"layer {i + 1}, head {h + 1}", fontsize=8)
            if i == n_layers - 1:  # shared axes: label the outer ones only
                ax.set_xlabel(key_label, fontsize=8)
            if h == 0:
                ax.set_ylabel(query_label, fontsize=8)
            q, k = np.meshgrid(np.arange(layer.shape[1]), np.arange(layer.shape[2]), indexing="ij")
            rows.append(
                pd.DataFrame(
                    {
                        "layer": i + 1,
                        "head": h + 1,
                        "query": q.ravel(),
                        "key": k.ravel(),
                        "weight": layer[h].ravel(),
                    }
                )
            )
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label="attention weight")
    fig.suptitle(title)
    return fig, pd.concat(rows, ignore_index=True)
