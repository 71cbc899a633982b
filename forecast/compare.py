"""Compare models: a leaderboard over seeds and a Diebold-Mariano test against a baseline.

The Diebold-Mariano (DM) test asks whether two forecasts have the same expected loss.
Here the loss of a test window is its mean squared error over the horizon (and targets),
so the loss-differential series d_t = loss_model(t) - loss_baseline(t) has one value per
forecast origin. Windows at stride 1 share targets, so d_t is autocorrelated up to lag
h - 1 (h = horizon in windows). Its long-run variance is a HAC estimate over lags
0..h-1: by default with equal weights, the estimator of Diebold & Mariano (1995) for which
Harvey, Leybourne & Newbold (1997) derived their small-sample correction, falling back to
Newey-West (Bartlett) weights when the equal-weight estimate is not positive. The
HLN-corrected statistic is compared with Student's t with n - 1 degrees of freedom
(`scipy.stats.t`; scipy comes with scikit-learn).

Why not Bartlett weights always: they shrink the autocovariances of a differential that
really is MA(h-1), so the variance is too small and the test rejects too often. Simulated
equal-accuracy MA(23) differentials of length 2,857 (the ETTh1 test set, h = 24) were
rejected at the 5% level 5.3% of the time with equal weights and 11% with Bartlett
weights (see tests/test_compare.py).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

KERNELS = ("uniform", "bartlett")
METRIC_COLUMNS = ["mse", "mae", "rmse", "smape", "mase", "orig_mse", "orig_mae"]
"""Per-seed point-metric columns the leaderboard averages (those present); then come the
`interval_columns`, `fit_seconds` and `predict_seconds`."""

QUANTILE_LOSSES = ("pinball", "wql", "crps")


def interval_columns(columns: Iterable[str]) -> list[str]:
    """The interval metrics among `columns`, in report order: per coverage level
    (ascending) `coverage_X`, `width_X` (scaled), `orig_width_X` (original units), then
    the quantile losses scaled and in original units (`orig_pinball`, ...).

    >>> interval_columns(["crps", "width_90", "coverage_90", "coverage_50", "orig_crps"])
    ['coverage_50', 'coverage_90', 'width_90', 'crps', 'orig_crps']

    Args:
        columns: column names, e.g. of the per-seed metrics.
    """
    names = set(columns)
    levels = sorted(
        (c.removeprefix("coverage_") for c in names if c.startswith("coverage_")), key=float
    )
    per_level = [f"{m}_{x}" for x in levels for m in ("coverage", "width", "orig_width")]
    losses = [*QUANTILE_LOSSES, *(f"orig_{m}" for m in QUANTILE_LOSSES)]
    return [c for c in [*per_level, *losses] if c in names]


@dataclass(frozen=True)
class DMResult:
    """One Diebold-Mariano test.

    Args:
        statistic: HLN-corrected DM statistic; negative means the first forecast has the
            lower loss.
        p_value: two-sided p-value from Student's t with n - 1 degrees of freedom.
        mean_difference: mean of loss_a - loss_b.
        n: length of the loss-differential series.
        lag: autocovariance lags used (h - 1).
        kernel: the HAC weights used ('uniform', or 'bartlett' as the fallback).
    """

    statistic: float
    p_value: float
    mean_difference: float
    n: int
    lag: int
    kernel: str = "uniform"


def hac_variance(d: np.ndarray, lag: int, kernel: str = "uniform") -> float:
    """Long-run variance gamma_0 + 2 sum_k w_k gamma_k of a series, k = 1..lag.

    Args:
        d: a 1-D series.
        lag: largest autocovariance lag.
        kernel: 'uniform' (w_k = 1, Diebold-Mariano) or 'bartlett' (w_k = 1 - k / (lag +
            1), Newey-West; never negative).
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {list(KERNELS)}")
    n = len(d)
    x = d - d.mean()
    var = float(x @ x) / n
    for k in range(1, min(lag, n - 1) + 1):
        w = 1.0 if kernel == "uniform" else 1.0 - k / (lag + 1)
        var += 2.0 * w * float(x[k:] @ x[:-k]) / n
    return var


def diebold_mariano(
    loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1, kernel: str = "uniform"
) -> DMResult:
    """Test equal expected loss of two forecasts of the same series.

    Args:
        loss_a: per-origin loss of the first forecast, in time order.
        loss_b: per-origin loss of the second forecast, same origins.
        horizon: h; autocorrelation of the differential is allowed up to lag h - 1.
        kernel: HAC weights, 'uniform' (falls back to 'bartlett' if not positive) or
            'bartlett'.

    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=200) ** 2, rng.normal(size=200) ** 2 + 1.0
    >>> r = diebold_mariano(a, b, horizon=1)
    >>> r.statistic < 0 and r.p_value < 0.01
    True
    """
    from scipy import stats

    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"the DM test needs two 1-D loss series of length >= 2, got {d.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    n, h = len(d), int(horizon)
    mean = float(d.mean())
    var = hac_variance(d, h - 1, kernel)
    if var <= 0.0 and kernel == "uniform":
        kernel, var = "bartlett", hac_variance(d, h - 1, "bartlett")
    if var <= 0.0:  # identical forecasts: no evidence either way
        stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        return DMResult(stat, 1.0 if mean == 0 else 0.0, mean, n, h - 1, kernel)
    dm = mean / math.sqrt(var / n)
    # Harvey, Leybourne & Newbold (1997): finite-sample bias of the variance estimate.
    hln = math.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 1e-12) / n)
    stat = dm * hln
    p = float(2.0 * stats.t.sf(abs(stat), df=n - 1))
    return DMResult(stat, p, mean, n, h - 1, kernel)


def window_losses(
    prediction: np.ndarray, target: np.ndarray, origin_time: np.ndarray | None = None
) -> np.ndarray:
    """Per-origin squared-error loss: mean over horizon and targets of each window.

    Args:
        prediction: [N, H, targets].
        target: [N, H, targets].
        origin_time: [N] forecast origins; with several series per origin, the losses of
            one origin are averaged so the series is one value per time (sorted by time).
    """
    loss = ((prediction.astype(np.float64) - target) ** 2).mean(axis=(1, 2))  # [N]
    if origin_time is None:
        return loss
    frame = pd.DataFrame({"t": origin_time, "loss": loss})
    return frame.groupby("t", sort=True)["loss"].mean().to_numpy()


def significance_table(losses: dict[str, np.ndarray], reference: str, horizon: int) -> pd.DataFrame:
    """DM test of every model against `reference` (columns model, vs, dm_stat, dm_p_value).

    Args:
        losses: model -> per-origin loss series (same origins for all).
        reference: the model everything is compared with (the best baseline).
        horizon: h of the test (lag h - 1).
    """
    rows = []
    for name, loss in losses.items():
        if name == reference:
            rows.append(
                {"model": name, "dm_vs": reference, "dm_stat": np.nan, "dm_p_value": np.nan}
            )
            continue
        r = diebold_mariano(loss, losses[reference], horizon)
        rows.append(
            {
                "model": name,
                "dm_vs": reference,
                "dm_stat": r.statistic,
                "dm_p_value": r.p_value,
                "dm_mean_loss_diff": r.mean_difference,
                "dm_n": r.n,
                "dm_lag": r.lag,
            }
        )
    return pd.DataFrame(rows)


def leaderboard(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per model, sorted by test MSE, with skill vs repeat-last.

    `skill_vs_naive` = 1 - MSE / MSE(naive): above 0 beats repeating the last value.
    The std columns are NaN for a model fitted with one seed only.

    Args:
        per_seed: one row per (model, seed) with columns model, kind and metrics.
    """
    cols = [c for c in METRIC_COLUMNS if c in per_seed] + interval_columns(per_seed.columns)
    cols += [c for c in ("fit_seconds", "predict_seconds") if c in per_seed]
    grouped = per_seed.groupby(["model", "kind"], sort=False)
    board = grouped[cols].mean()
    std = grouped[["mse", "mae"]].std(ddof=0)
    board["n_seeds"] = grouped.size()
    one = board["n_seeds"] == 1  # no spread to report: blank, not 0
    board["mse_std"] = std["mse"].mask(one)
    board["mae_std"] = std["mae"].mask(one)
    if "intervals" in per_seed:  # how the intervals were made: 'conformal' or 'cqr'
        board["intervals"] = grouped["intervals"].first()
    board = board.reset_index()
    if "naive" in set(board["model"]):
        naive = float(board.loc[board["model"] == "naive", "mse"].iloc[0])
        board["skill_vs_naive"] = 1.0 - board["mse"] / naive
    order = ["model", "kind", "mse", "mse_std", "mae", "mae_std", "rmse", "smape", "mase"]
    order = [c for c in order if c in board] + [c for c in board if c not in order]
    return board[order].sort_values("mse", kind="stable").reset_index(drop=True)


def best_baseline(board: pd.DataFrame) -> str:
    """The baseline with the lowest mean test MSE on a leaderboard.

    Args:
        board: from `leaderboard`.
    """
    base = board[board["kind"] == "baseline"]
    if base.empty:
        raise ValueError("the leaderboard has no baseline; expected at least one")
    return str(base.sort_values("mse", kind="stable")["model"].iloc[0])


def per_horizon_mean(curves: pd.DataFrame) -> pd.DataFrame:
    """Per-step error curves averaged over seeds (columns model, step, metrics...).

    Args:
        curves: rows of (model, seed, step, metric columns).
    """
    value_cols = [c for c in curves.columns if c not in ("model", "seed", "step")]
    return curves.groupby(["model", "step"], sort=False)[value_cols].mean().reset_index()


def format_value(value: object, digits: int = 4, sci: bool = False) -> str:
    """One table cell as text: NaN blank, floats with `digits` decimals.

    Args:
        value: the cell.
        digits: decimals of floats.
        sci: scientific notation for non-zero values below 10**-digits (p-values), which
            would otherwise all read 0.0000.

    >>> format_value(5.8e-9, sci=True), format_value(0.25), format_value(float("nan"))
    ('5.8e-09', '0.2500', '')
    """
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return ""
        if sci and value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def formatted(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Every cell of a table as text (`format_value`; p-value columns in scientific
    notation when small), the one formatting of the Markdown, HTML and console tables.

    Args:
        frame: the table.
        digits: decimals of floats.
    """
    return pd.DataFrame(
        {
            col: [format_value(v, digits, "p_value" in str(col)) for v in frame[col]]
            for col in frame.columns
        },
        columns=frame.columns,
    )


def markdown_escape(text: object) -> str:
    """Text safe in Markdown (and in a Markdown table cell): HTML special characters
    escaped as the HTML report does, pipes escaped.

    >>> print(markdown_escape("<b>load|kW</b>"))
    &lt;b&gt;load\\|kW&lt;/b&gt;
    """
    return html.escape(str(text), quote=False).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as a GitHub Markdown table; floats with `digits` decimals, text
    escaped (`markdown_escape`).

    Args:
        frame: the table.
        digits: decimals of float columns (p-values below 10**-digits in scientific
            notation).
    """
    cells = formatted(frame, digits)
    header = "| " + " | ".join(markdown_escape(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(markdown_escape(v) for v in row) + " |"
        for row in cells.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"
