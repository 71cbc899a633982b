"""Importance, agreement and deletion figures: tables in, `(Figure, data)` out.

Bar charts stay readable with many features: the `top_k` largest are shown sorted, the
rest summed into one 'other (n)' bar. Nothing is shown on screen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecast.interpret.plots import FOLD_ABOVE, top_k_rows


def plot_feature_importance(
    scores: pd.Series | pd.DataFrame,
    *,
    top_k: int | None = None,
    title: str = "Feature importance",
    xlabel: str = "importance",
    highlight: str | None = None,
    uniform: float | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Horizontal bars, largest on top, with 95% intervals when the table has them.

    Args:
        scores: a Series (index = feature) or a DataFrame with columns feature,
            importance and optionally ci_low, ci_high (e.g. `permutation_importance`).
        top_k: with more than `FOLD_ABOVE` features, bars shown (default FOLD_ABOVE);
            the rest are summed into 'other (n)' (no interval).
        title: figure title.
        xlabel: x axis label (what the number means).
        highlight: a feature drawn in another colour (e.g. the known true driver).
        uniform: draw a dashed line at this value (e.g. 1/F for attention shares: what
            attention spread evenly over the features would give).
    """
    if isinstance(scores, pd.Series):
        table = pd.DataFrame({"importance": scores.astype(float)})
    else:
        missing = {"feature", "importance"} - set(scores.columns)
        if missing:
            raise ValueError(f"the importance table lacks column(s) {sorted(missing)}")
        table = scores.set_index("feature")[
            [c for c in ("importance", "ci_low", "ci_high") if c in scores.columns]
        ].astype(float)
    fold = None if len(table) <= FOLD_ABOVE else (top_k or FOLD_ABOVE)
    shown = top_k_rows(table["importance"], fold).to_frame("importance")
    for col in ("ci_low", "ci_high"):
        if col in table.columns:
            shown[col] = table[col].reindex(shown.index)
    fig = Figure(figsize=(7, 1.2 + 0.35 * len(shown)))
    ax = fig.subplots()
    y = np.arange(len(shown))
    colors = ["C3" if name == highlight else "C0" for name in shown.index]
    xerr = None
    if {"ci_low", "ci_high"} <= set(shown.columns) and shown["ci_low"].notna().any():
        lo = (shown["importance"] - shown["ci_low"]).clip(lower=0).fillna(0)
        hi = (shown["ci_high"] - shown["importance"]).clip(lower=0).fillna(0)
        xerr = np.vstack([lo.to_numpy(), hi.to_numpy()])
    ax.barh(y, shown["importance"], xerr=xerr, color=colors, capsize=3)
    ax.set_yticks(y, list(shown.index))
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    if uniform is not None:
        ax.axvline(uniform, color="k", ls="--", lw=1, label=f"uniform ({uniform:.3g})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("input feature")
    note = f" (red: {highlight})" if highlight in shown.index else ""
    ax.set_title(title + note)
    data = shown.reset_index(names="feature")
    return fig, data


def plot_lag_importance(
    frame: pd.DataFrame, *, title: str = "Permutation importance per block of lags"
) -> tuple[Figure, pd.DataFrame]:
    """Bars per lag block (oldest left), with 95% intervals.

    Args:
        frame: from `lag_permutation_importance`.
        title: figure title.
    """
    data = frame.sort_values("lag_min", ascending=False).reset_index(drop=True)
    fig = Figure(figsize=(max(6.0, 0.5 * len(data) + 3), 4))
    ax = fig.subplots()
    x = np.arange(len(data))
    err = np.vstack(
        [
            (data["importance"] - data["ci_low"]).clip(lower=0).fillna(0).to_numpy(),
            (data["ci_high"] - data["importance"]).clip(lower=0).fillna(0).to_numpy(),
        ]
    )
    ax.bar(x, data["importance"], yerr=err, capsize=3, color="C0")
    unit = data["lag_unit"].iloc[0]
    labels = [f"{a:g}-{b:g}" for a, b in zip(data["lag_time_min"], data["lag_time_max"])]
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"lags before the forecast origin ({unit}), all features permuted together")
    ax.set_ylabel("increase in MSE (scaled)")
    ax.set_title(title)
    return fig, data


def plot_agreement(
    matrix: pd.DataFrame, *, title: str = "Rank agreement between methods (Spearman)"
) -> tuple[Figure, pd.DataFrame]:
    """Heatmap of a method x method Spearman matrix, values written in the cells.

    Args:
        matrix: from `agreement_matrix`.
        title: figure title.
    """
    n = len(matrix)
    fig = Figure(figsize=(2.0 + 1.3 * n, 1.5 + 1.1 * n))
    ax = fig.subplots()
    mesh = ax.imshow(matrix.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            v = matrix.iat[i, j]
            color = "white" if pd.notna(v) and abs(v) > 0.6 else "black"
            text = "n/a" if pd.isna(v) else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(n), list(matrix.columns), rotation=30, ha="right")
    ax.set_yticks(range(n), list(matrix.index))
    ax.set_xlabel("method")
    ax.set_ylabel("method")
    fig.colorbar(mesh, ax=ax, label="Spearman rank correlation")
    ax.set_title(title)
    data = matrix.reset_index(names="method")
    return fig, data


def plot_deletion(
    frame: pd.DataFrame, *, title: str = "Deletion test: error as top-ranked inputs are removed"
) -> tuple[Figure, pd.DataFrame]:
    """MSE against k deleted cells per method; random deletion with its 95% band.

    Args:
        frame: from `deletion_test`.
        title: figure title.
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (name, part) in enumerate(frame.groupby("method", sort=False)):
        part = part.sort_values("k")
        x = part["k"].to_numpy()
        if name == "random":
            ax.plot(x, part["mse"], color="grey", ls="--", marker=".", label="random (mean)")
            if part["ci_low"].notna().any():
                ax.fill_between(x, part["ci_low"], part["ci_high"], color="grey", alpha=0.25)
        else:
            ax.plot(x, part["mse"], marker="o", ms=3, color=f"C{i}", label=name)
    ax.set_xscale("symlog", linthresh=1)
    ks = np.sort(frame["k"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k input cells (feature x input step) set to 0, highest-ranked first")
    ax.set_ylabel("MSE (scaled)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig, frame.copy()
