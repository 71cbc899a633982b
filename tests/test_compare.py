"""Leaderboard and the Diebold-Mariano test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forecast.compare import (
    best_baseline,
    diebold_mariano,
    formatted,
    hac_variance,
    leaderboard,
    markdown_table,
    significance_table,
    window_losses,
)


def test_dm_with_horizon_one_is_the_one_sample_t_test():
    # With h = 1 the HLN factor is sqrt((n - 1) / n), which turns the population variance
    # of the DM statistic into the sample variance of a one-sample t-test.
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2.0, size=150), rng.gamma(2.1, size=150)
    r = diebold_mariano(a, b, horizon=1)
    t = stats.ttest_1samp(a - b, 0.0)
    assert r.statistic == pytest.approx(t.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(t.pvalue, rel=1e-10)
    assert (r.n, r.lag) == (150, 0)


def test_dm_matches_a_hand_computation_with_hac_and_hln():
    rng = np.random.default_rng(2)
    e = rng.normal(size=203)
    d = e[3:] + 0.8 * e[2:-1] + 0.5 * e[1:-2] + 0.3 * e[:-3] + 0.8  # MA(3) + mean shift
    h, n = 4, len(d)
    x = d - d.mean()
    gammas = [x @ x / n] + [x[k:] @ x[:-k] / n for k in range(1, h)]
    uniform = gammas[0] + 2 * sum(gammas[1:])
    bartlett = gammas[0] + 2 * sum((1 - k / h) * gammas[k] for k in range(1, h))
    assert hac_variance(d, h - 1) == pytest.approx(uniform, rel=1e-12)
    assert hac_variance(d, h - 1, "bartlett") == pytest.approx(bartlett, rel=1e-12)
    dm = d.mean() / math.sqrt(uniform / n)
    hln = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    r = diebold_mariano(d, np.zeros(n), horizon=h)
    assert r.statistic == pytest.approx(hln, rel=1e-12)
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(hln), n - 1), rel=1e-10)
    assert r.p_value < 0.05  # the mean shift is detected


def test_dm_is_antisymmetric_and_handles_identical_forecasts():
    rng = np.random.default_rng(3)
    a, b = rng.random(80), rng.random(80)
    ab, ba = diebold_mariano(a, b, 6), diebold_mariano(b, a, 6)
    assert ab.statistic == pytest.approx(-ba.statistic)
    assert ab.p_value == pytest.approx(ba.p_value)
    same = diebold_mariano(a, a, 6)
    assert (same.statistic, same.p_value) == (0.0, 1.0)


@pytest.mark.parametrize("n, h", [(300, 12), (2857, 24)])
def test_dm_keeps_its_size_under_the_null_with_overlapping_windows(n, h):
    # Equal-accuracy forecasts whose loss differential is MA(h-1), as for stride-1 windows:
    # the test should reject about 5% of the time at the 5% level, not far more.
    rng = np.random.default_rng(4)
    rejections, reps = 0, 200
    for _ in range(reps):
        e = rng.normal(size=n + h - 1)
        d = np.convolve(e, np.ones(h) / h, mode="valid")  # [n], MA(h - 1)
        rejections += diebold_mariano(d, np.zeros_like(d), h).p_value < 0.05
    assert rejections / reps < 0.10


def test_dm_falls_back_to_bartlett_weights_when_the_variance_is_not_positive():
    d = np.tile([1.0, -1.0], 50) + 0.01  # strongly negatively autocorrelated
    r = diebold_mariano(d, np.zeros_like(d), horizon=2)
    assert hac_variance(d, 1) <= 0 and r.kernel == "bartlett" and np.isfinite(r.statistic)


def test_dm_errors():
    with pytest.raises(ValueError, match="needs two 1-D loss series of length >= 2"):
        diebold_mariano(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="horizon must be >= 1, got 0"):
        diebold_mariano(np.ones(5), np.zeros(5), horizon=0)


def test_window_losses_average_series_at_the_same_origin():
    pred = np.zeros((4, 2, 1))
    target = np.array([1.0, 2.0, 3.0, 4.0])[:, None, None] * np.ones((4, 2, 1))
    assert window_losses(pred, target).tolist() == [1.0, 4.0, 9.0, 16.0]
    times = np.array(["2024-01-02", "2024-01-01", "2024-01-02", "2024-01-01"], "datetime64[ns]")
    assert window_losses(pred, target, times).tolist() == [10.0, 5.0]  # sorted by time


def _per_seed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["naive", "linear", "lstm", "lstm"],
            "kind": ["baseline", "baseline", "neural", "neural"],
            "seed": [0, 0, 0, 1],
            "mse": [1.0, 0.5, 0.4, 0.6],
            "mae": [0.8, 0.5, 0.4, 0.6],
            "rmse": [1.0, 0.7, 0.6, 0.8],
        }
    )


def test_leaderboard_mean_std_and_skill():
    board = leaderboard(_per_seed())
    assert board["model"].tolist() == ["linear", "lstm", "naive"]
    lstm = board.set_index("model").loc["lstm"]
    assert lstm["mse"] == pytest.approx(0.5) and lstm["mse_std"] == pytest.approx(0.1)
    assert lstm["n_seeds"] == 2 and lstm["skill_vs_naive"] == pytest.approx(0.5)
    assert best_baseline(board) == "linear"
    with pytest.raises(ValueError, match="has no baseline"):
        best_baseline(board[board["kind"] == "neural"])


def test_significance_table_and_markdown():
    rng = np.random.default_rng(5)
    base = rng.random(100)
    losses = {"linear": base, "lstm": base * 0.5, "naive": base + 1}
    table = significance_table(losses, "linear", horizon=3)
    row = table.set_index("model")
    assert np.isnan(row.loc["linear", "dm_stat"])
    assert row.loc["lstm", "dm_stat"] < 0 < row.loc["naive", "dm_stat"]
    assert (row["dm_vs"] == "linear").all()
    text = markdown_table(table[["model", "dm_stat", "dm_p_value"]])
    assert text.splitlines()[0] == "| model | dm_stat | dm_p_value |"
    assert "e-" in text.splitlines()[3]  # tiny p-values in scientific notation


def test_one_seed_leaves_the_std_blank_and_tables_escape_html():
    board = leaderboard(_per_seed()[lambda d: d["seed"] == 0])
    assert board["mse_std"].isna().all() and board["mae_std"].isna().all()
    text = markdown_table(board[["model", "mse", "mse_std"]].assign(**{"<b>x|y</b>": 1.0}))
    header, _, first = text.splitlines()[:3]
    assert "<b>" not in text and "&lt;b&gt;x\\|y&lt;/b&gt;" in header
    assert first.endswith("|  | 1.0000 |")  # std blank, not 0.0000
    cells = formatted(pd.DataFrame({"dm_p_value": [5.8e-9, 0.25], "mse": [1e-9, 0.5]}))
    assert cells["dm_p_value"].tolist() == ["5.8e-09", "0.2500"]
    assert cells["mse"].tolist() == ["0.0000", "0.5000"]  # only p-values go scientific
