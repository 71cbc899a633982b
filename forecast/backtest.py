"""Rolling-origin backtest: the test part cut into successive blocks (folds) of origins.

Without refitting, the models fitted once are scored on each block. With refitting, every
model is retrained per fold on all rows before the fold's first target (the validation
part being the rows just before it, as long as the main validation part) and scored on
that block, with a scaler fitted on that fold's own training rows. Fold 0 with refitting
is therefore exactly the main run restricted to fold 0's windows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from forecast.data.prepare import DataBundle
from forecast.data.split import SplitSpec
from forecast.evaluate import Predictions, score

FitAndScore = Callable[[str, int, "Fold"], dict]
"""Retrains one (model, seed) for one fold (see `refit_split`) and returns its metrics row."""


@dataclass(frozen=True)
class Fold:
    """One block of forecast origins of the test part.

    Args:
        index: fold number from 0.
        first_origin: time of the first origin (inclusive).
        last_origin: time of the last origin (inclusive).
    """

    index: int
    first_origin: pd.Timestamp
    last_origin: pd.Timestamp


def make_folds(bundle: DataBundle, folds: int) -> list[Fold]:
    """Cut the test origins into `folds` successive blocks of (nearly) equal size.

    Args:
        bundle: the prepared data.
        folds: number of blocks (>= 2).
    """
    times = np.unique(_origin_times(bundle))
    if folds < 2 or len(times) < folds:
        raise ValueError(
            f"backtest.folds must be between 2 and the {len(times)} test origins, got {folds}"
        )
    return [
        Fold(i, pd.Timestamp(block[0]), pd.Timestamp(block[-1]))
        for i, block in enumerate(np.array_split(times, folds))
    ]


def _origin_times(bundle: DataBundle) -> np.ndarray:
    ds = bundle.test
    return bundle.frame.timestamps[ds.origin_rows()]


def fold_windows(bundle: DataBundle, fold: Fold) -> np.ndarray:
    """Positions (in `bundle.test`) of the windows whose origin lies in `fold`.

    Args:
        bundle: the prepared data.
        fold: the block.
    """
    t = _origin_times(bundle)
    return np.flatnonzero(
        (t >= fold.first_origin.to_datetime64()) & (t <= fold.last_origin.to_datetime64())
    )


def score_fold(preds: Predictions, bundle: DataBundle, fold: Fold) -> dict[str, float]:
    """Metrics of predictions for the whole test part, restricted to one fold.

    Args:
        preds: predictions of every test window of `bundle`.
        bundle: the prepared data.
        fold: the block to score.
    """
    idx = fold_windows(bundle, fold)
    part = Predictions(
        preds.prediction[idx], preds.target[idx], preds.series_index[idx], preds.origin[idx]
    )
    return score(part, bundle, bundle.test.subset(idx))


def refit_split(bundle: DataBundle, fold: Fold) -> SplitSpec:
    """The split that retrains on everything before `fold` and tests on exactly its origins.

    Args:
        bundle: the main prepared data (its first series sets the borders).
        fold: the block to test on.
    """
    lo, hi = int(bundle.frame.bounds[0]), int(bundle.frame.bounds[1])
    times = bundle.frame.timestamps[lo:hi]
    horizon = bundle.layout.horizon
    first = int(np.searchsorted(times, fold.first_origin.to_datetime64()))
    last = int(np.searchsorted(times, fold.last_origin.to_datetime64()))
    test_start, test_end = first + 1, last + horizon + 1  # first target row, end (exclusive)
    b0, b1, _ = bundle.borders[0]
    val_start = test_start - (b1 - b0)
    if val_start <= 0:
        raise ValueError(
            f"backtest fold {fold.index} leaves no training rows before its validation part"
        )

    def stamp(row: int) -> str:
        if row < len(times):
            return str(pd.Timestamp(times[row]))
        step = times[-1] - times[-2]
        return str(pd.Timestamp(times[-1] + step * (row - len(times) + 1)))

    return SplitSpec(
        "timestamps", timestamps=(stamp(val_start), stamp(test_start), stamp(test_end))
    )


def run_backtest(
    bundle: DataBundle,
    preds: dict[tuple[str, int], np.ndarray],
    *,
    folds: int,
    refit: bool,
    to_predictions: Callable[[np.ndarray], Predictions],
    fit_and_score: FitAndScore,
    names: Sequence[str],
    seeds: Sequence[int],
    progress: bool = True,
) -> pd.DataFrame | None:
    """Per (model, seed, fold) metrics of the rolling-origin backtest, or None if off.

    Args:
        bundle: the main run's data.
        preds: (model, seed) -> test predictions of the main run (scaled arrays).
        folds: number of folds (0: no backtest).
        refit: retrain every model per fold (`fit_and_score`) instead of scoring `preds`.
        to_predictions: turns a prediction array into `Predictions` on the test windows.
        fit_and_score: retrains one (model, seed) for one fold and returns its row.
        names: the models, in order.
        seeds: the seeds, in order.
        progress: show a progress bar while refitting.
    """
    if folds == 0:
        return None
    blocks = make_folds(bundle, folds)
    rows = []
    if not refit:
        for (name, seed), pred in preds.items():
            for fold in blocks:
                m = score_fold(to_predictions(pred), bundle, fold)
                rows.append({"model": name, "seed": seed, "fold": fold.index, **m})
    else:
        work = [(f, n, s) for f in blocks for s in seeds for n in names]
        bar = tqdm(work, desc="backtest (refit)", unit="fit", disable=not progress)
        for fold, name, seed in bar:
            rows.append(fit_and_score(name, seed, fold))
        bar.close()
    table = pd.DataFrame(rows)
    spans = {f.index: (f.first_origin, f.last_origin) for f in blocks}
    table["first_origin"] = table["fold"].map(lambda i: spans[i][0])
    table["last_origin"] = table["fold"].map(lambda i: spans[i][1])
    table["refit"] = refit
    return table
