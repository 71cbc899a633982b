"""Do the explanations agree, are they faithful, and do they find the known truth?

- `rank_agreement`: Spearman rank correlation between every pair of methods' scores
  over the same items (features, or lag blocks).
- `deletion_test`: set the k encoder cells (feature x input step) that a method ranks
  highest to the baseline value 0 (the training mean in the scaled space) in every window
  and measure the MSE, against k random cells (repeated); a faithful ranking makes the
  error grow faster than random deletion does.
- `ground_truth_check`: on data whose driver covariate and lag are known, whether each
  method ranks the driver first, and how much temporal attention falls within +-window
  steps of the true input position, against the uniform share.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from forecast.data.synthetic import GroundTruth
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.interpret._common import (
    encoder_grid,
    eval_batch,
    mse,
    progress_bar,
    with_encoder_grid,
)
from forecast.interpret.importance import lag_blocks, mean_interval
from forecast.models.base import Forecaster


def rank_agreement(scores: dict[str, pd.Series]) -> pd.DataFrame:
    """Spearman rank correlation of every pair of methods over their common items.

    Args:
        scores: method name -> importance per item (index = feature names or lag labels).

    Returns columns method_a, method_b, spearman, p_value, n_items (NaN when a method's
    scores are constant or fewer than 3 items are shared).
    """
    rows = []
    for (a, sa), (b, sb) in itertools.combinations(scores.items(), 2):
        common = sa.index.intersection(sb.index)
        rho = p = float("nan")
        x, y = sa.loc[common].to_numpy(float), sb.loc[common].to_numpy(float)
        if len(common) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = stats.spearmanr(x, y)
            rho, p = float(result.statistic), float(result.pvalue)
        rows.append([a, b, rho, p, len(common)])
    return pd.DataFrame(rows, columns=["method_a", "method_b", "spearman", "p_value", "n_items"])


def agreement_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """The pairwise table of `rank_agreement` as a symmetric method x method matrix."""
    names = list(dict.fromkeys([*table["method_a"], *table["method_b"]]))
    mat = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for a, b, rho in table[["method_a", "method_b", "spearman"]].itertuples(index=False):
        mat.loc[a, b] = mat.loc[b, a] = rho
    return mat


def block_scores(per_lag: np.ndarray, input_length: int, block: int) -> pd.Series:
    """Sum per-position scores [L] over the lag blocks of `lag_permutation_importance`.

    Args:
        per_lag: [L] score per encoder position (position order, not lag order).
        input_length: L.
        block: lags per block.
    """
    rows = {}
    for lo, hi in lag_blocks(input_length, block):
        rows[f"lags {input_length - hi}-{input_length - 1 - lo}"] = float(per_lag[lo:hi].sum())
    return pd.Series(rows)


def default_ks(n_cells: int) -> list[int]:
    """0, 1, 2, 4, ... up to half of the cells: the k values of the deletion test."""
    ks, k = [0], 1
    while k <= max(1, n_cells // 2):
        ks.append(k)
        k *= 2
    return ks


def deletion_test(
    model: Forecaster,
    ds: WindowDataset,
    rankings: dict[str, np.ndarray],
    *,
    ks: list[int] | None = None,
    n_random: int = 5,
    max_windows: int | None = 512,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """MSE after deleting (setting to 0) the k top-ranked encoder cells, vs k random cells.

    Every method's cells are deleted in the same positions in every window (a global
    ranking). Random deletion is repeated `n_random` times; each repeat deletes nested
    sets (the first k of one random order). Returns columns method, k, mse, ci_low,
    ci_high, increase (mse - mse at k = 0), n_repeats; method 'random' is the reference.

    Args:
        model: a fitted forecaster.
        ds: evaluation windows.
        rankings: method name -> [L, F] score map (higher = more important).
        ks: numbers of cells to delete; `default_ks(L * F)` when None.
        n_random: repeats of random deletion (>= 1).
        max_windows: windows evaluated (a seeded random subset); None = all.
        seed: seeds the subset and the random orders.
        batch_size: windows per forward pass.
        progress: show a tqdm bar.
    """
    layout = ds.layout
    shape = (layout.input_length, len(layout.encoder_features))
    n_cells = shape[0] * shape[1]
    for name, score in rankings.items():
        if np.shape(score) != shape:
            raise ValueError(
                f"ranking {name!r} has shape {np.shape(score)}; expected [L, F] = {list(shape)}"
            )
    if n_random < 1:
        raise ValueError(f"n_random must be >= 1, got {n_random}")
    ks = sorted(set(ks if ks is not None else default_ks(n_cells)))
    if ks[0] < 0 or ks[-1] > n_cells:
        raise ValueError(f"k must be in [0, {n_cells}] (L x F cells), got {ks}")
    batch = eval_batch(ds, max_windows, seed)
    grid = encoder_grid(batch)  # [B, L, F]
    rng = np.random.default_rng(seed)
    orders = {
        name: np.argsort(-np.asarray(score, float).ravel(), kind="stable")
        for name, score in rankings.items()
    }
    randoms = [rng.permutation(n_cells) for _ in range(n_random)]
    bar = progress_bar(len(ks) * (len(orders) + n_random), "deletion", progress)

    def error(order: np.ndarray, k: int) -> float:
        mask = torch.ones(n_cells)
        mask[torch.from_numpy(order[:k])] = 0.0
        edited = with_encoder_grid(batch, grid * mask.view(1, *shape), layout)
        bar.update(1)
        return mse(model, edited, batch_size)

    rows = []
    for name, order in orders.items():
        for k in ks:
            e = error(order, k)
            rows.append([name, k, e, e, e, 1])
    for k in ks:
        errors = np.array([error(order, k) for order in randoms])
        mean, lo, hi, _ = mean_interval(errors)
        rows.append(["random", k, mean, lo, hi, n_random])
    bar.close()
    frame = pd.DataFrame(rows, columns=["method", "k", "mse", "ci_low", "ci_high", "n_repeats"])
    base = frame.loc[frame["k"] == frame["k"].min(), "mse"].mean()
    frame["increase"] = frame["mse"] - base
    return frame


def deletion_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean MSE increase over the k values per method, and its ratio to random deletion."""
    mean = frame.groupby("method", sort=False)["increase"].mean()
    ref = mean.get("random", float("nan"))
    ratio = mean / ref if ref and np.isfinite(ref) and ref > 0 else mean * float("nan")
    return pd.DataFrame(
        {"method": mean.index, "mean_increase": mean.values, "vs_random": ratio.values}
    )


def true_positions(truth: GroundTruth, layout: WindowLayout) -> pd.DataFrame:
    """Encoder position of the driver value each forecast step depends on.

    For step h (1-based) the target at origin + h reads the driver at origin + h - lag:
    lag-from-origin lag - h, position j = L - 1 - (lag - h). Relevant only for h <= lag
    (and j >= 0); other steps get `relevant` False and position -1.

    Args:
        truth: the generating process.
        layout: the windows' layout.
    """
    L, H = layout.input_length, layout.horizon
    rows = []
    for h in range(1, H + 1):
        j = L - 1 - (truth.lag - h)
        ok = h <= truth.lag and j >= 0
        rows.append([h, truth.lag - h if ok else -1, j if ok else -1, ok])
    return pd.DataFrame(rows, columns=["step", "true_lag", "true_position", "relevant"])


@dataclass
class GroundTruthReport:
    """What each method found, against the truth.

    Args:
        features: per method: top_feature (among the truth's covariates), driver_rank
            (1 = first among them), driver_first, driver_score, runner_up_score (best
            distractor), top_overall and driver_rank_overall (every feature, the target's
            own past and calendar features included).
        attention: per relevant forecast step: step, true_lag, true_position, mass (within
            +-window), uniform (the same share under uniform attention), peak_position,
            peak_offset (peak - true position).
        summary: flat dict for JSON (driver, lag, per-method driver_first, mean masses).
    """

    features: pd.DataFrame
    attention: pd.DataFrame | None
    summary: dict


def _rank(s: pd.Series, name: str) -> int:
    order = s.sort_values(ascending=False, kind="stable")
    return int(np.flatnonzero(order.index == name)[0]) + 1


def ground_truth_check(
    truth: GroundTruth,
    layout: WindowLayout,
    scores: dict[str, pd.Series],
    *,
    temporal: np.ndarray | None = None,
    feature_map: np.ndarray | None = None,
    window: int = 2,
) -> GroundTruthReport:
    """Check feature rankings and temporal attention against a known driver and lag.

    The truth is about covariates: the driver moves the target, the distractors do not.
    So the driver is ranked among the covariates the truth names (driver + distractors);
    the target's own past and calendar features are informative too (seasonality), and
    their place is reported separately (`top_overall`, `driver_rank_overall`).

    Args:
        truth: driver and lag that generated the target.
        layout: the windows' layout.
        scores: method name -> importance per feature (index = feature names).
        temporal: [H, L] mean temporal attention, or None to skip that check.
        feature_map: [L, F] mean feature attention; when given, the summary says at which
            lag the driver's row peaks and whether that lies among the true lags
            (lag - H .. lag - 1, the inputs the forecast steps read).
        window: half-width, in steps, of the neighbourhood of the true position.
    """
    candidates = [truth.driver, *truth.distractors]
    rows = []
    for name, s in scores.items():
        missing = [c for c in candidates if c not in s.index]
        if missing:
            raise ValueError(
                f"the covariate(s) {missing} of the ground truth are not among {name!r}'s "
                f"features {list(s.index)}"
            )
        cov = s.loc[candidates].astype(float)
        rank = _rank(cov, truth.driver)
        runner_up = cov.drop(truth.driver).max() if len(cov) > 1 else float("nan")
        top = cov.sort_values(ascending=False, kind="stable").index[0]
        overall = s.sort_values(ascending=False, kind="stable").index[0]
        rows.append(
            [
                name,
                top,
                rank,
                rank == 1,
                float(cov[truth.driver]),
                float(runner_up),
                overall,
                _rank(s, truth.driver),
            ]
        )
    columns = ["method", "top_feature", "driver_rank", "driver_first", "driver_score"]
    columns += ["runner_up_score", "top_overall", "driver_rank_overall"]
    features = pd.DataFrame(rows, columns=columns)
    summary: dict = {"driver": truth.driver, "lag": truth.lag, "window": window}
    summary["driver_first"] = dict(zip(features["method"], features["driver_first"].map(bool)))
    if feature_map is not None:
        L = layout.input_length
        row = np.asarray(feature_map)[:, list(layout.encoder_features).index(truth.driver)]
        peak_lag = int(L - 1 - np.argmax(row))
        true_lags = [truth.lag - h for h in range(1, layout.horizon + 1) if truth.lag - h >= 0]
        summary.update(
            driver_attention_peak_lag=peak_lag,
            true_lags=true_lags,
            driver_attention_peak_at_true_lag=bool(peak_lag in true_lags),
        )
    attention = None
    if temporal is not None:
        L = layout.input_length
        pos = true_positions(truth, layout)
        pos = pos[pos["relevant"]].drop(columns="relevant")
        mass, uniform, peak = [], [], []
        for h, j in pos[["step", "true_position"]].itertuples(index=False):
            lo, hi = max(0, j - window), min(L, j + window + 1)
            mass.append(float(temporal[h - 1, lo:hi].sum()))
            uniform.append((hi - lo) / L)
            peak.append(int(np.argmax(temporal[h - 1])))
        attention = pos.assign(mass=mass, uniform=uniform, peak_position=peak)
        attention["peak_offset"] = attention["peak_position"] - attention["true_position"]
        if len(attention):
            m, u = float(attention["mass"].mean()), float(attention["uniform"].mean())
            summary.update(
                attention_mass=m,
                uniform_mass=u,
                attention_ratio=m / u,
                attention_beats_uniform=bool(m > u),
                median_peak_offset=float(attention["peak_offset"].median()),
            )
        else:
            summary["attention_note"] = f"no forecast step is within the lag {truth.lag}"
    return GroundTruthReport(features, attention, summary)
