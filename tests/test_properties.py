"""Property-based checks (hypothesis) of the data contract: splits, windows and scaling.

The contract (see `forecast.data.split`, `forecast.data.windows`, `forecast.data.scaling`):

- a part's windows are every window whose targets lie inside the part, `stride` apart,
  starting with the earliest one; a validation or test window may read its input from the
  rows before its part (never before its own series), but no target leaves its part;
- a window's tensors are exactly the rows it names, of its own series;
- scaler statistics come from training rows only, and inverse scaling gives back the
  original values (to float32 precision, as the scaled series is float32).

Random lengths, strides, series counts and borders; small example counts keep the whole
module at a few seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.data.frame import SeriesFrame
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.scaling import StandardScaler
from forecast.data.split import SplitSpec, part_starts

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARTS = ("train", "val", "test")


def _part_rows(borders: tuple[int, int, int], part: str) -> tuple[int, int]:
    """[lo, hi) rows of a part, local to its series."""
    return {"train": (0, borders[0]), "val": borders[:2], "test": borders[1:]}[part]


# ----------------------------------------------------------------------- splits
@st.composite
def part_cases(draw: st.DrawFn) -> tuple[tuple[int, int, int], int, int, int]:
    b0 = draw(st.integers(1, 150))
    b1 = b0 + draw(st.integers(0, 80))
    b2 = b1 + draw(st.integers(0, 80))
    return (b0, b1, b2), draw(st.integers(1, 40)), draw(st.integers(1, 30)), draw(st.integers(1, 9))


@FAST
@given(part_cases())
def test_part_starts_every_window_inside_its_part(case):
    borders, L, H, stride = case
    for part in PARTS:
        lo, hi = _part_rows(borders, part)
        starts = part_starts(borders, part, L, H, stride)

        def valid(s: int, lo: int = lo, hi: int = hi) -> bool:
            return s >= 0 and s + L >= lo and s + L + H <= hi  # in the series; targets in part

        assert all(valid(int(s)) for s in starts), (part, starts)
        if part == "train":  # training windows never read a row past the training part
            assert all(s + L + H <= borders[0] for s in starts)
        if len(starts) == 0:  # no window fits at all
            assert not any(valid(s) for s in range(0, hi))
            continue
        assert np.all(np.diff(starts) == stride)
        # The earliest allowed window comes first, and none is left off at the end.
        assert not valid(int(starts[0]) - 1) and valid(int(starts[0]))
        assert not valid(int(starts[-1]) + stride)


@FAST
@given(
    n=st.integers(1, 5000),
    train=st.floats(0.01, 1.0),
    val=st.floats(0.0, 1.0),
    test=st.floats(0.0, 1.0),
)
def test_fraction_borders_are_ordered_and_rounded_down(n, train, val, test):
    total = train + val + test
    fr = (train / total, val / total, test / total) if total > 1 else (train, val, test)
    try:
        spec = SplitSpec("fractions", fractions=fr)
        b = spec.borders_for(n)
    except ValueError as err:  # a part too small for any row: refused with a clear message
        assert "split" in str(err)
        assert int(n * fr[0]) == 0 or sum(fr) > 1 + 1e-9
        return
    assert 0 < b[0] <= b[1] <= b[2] <= n
    assert b[0] == int(n * fr[0]) and b[2] - b[1] == int(n * fr[2])


# ---------------------------------------------------------------------- windows
@st.composite
def frames(draw: st.DrawFn) -> dict:
    """A multi-series layout with borders every series can hold, plus lengths and stride."""
    L, H = draw(st.integers(1, 24)), draw(st.integers(1, 12))
    n_series = draw(st.integers(1, 3))
    b0 = L + H + draw(st.integers(0, 40))  # the train part needs one complete window
    b1 = b0 + draw(st.integers(0, 30))
    three = draw(st.booleans())
    if three:  # (train_end, val_end, test_end): rows past test_end are unused
        b2 = b1 + H + draw(st.integers(0, 30))
        lengths = [b2 + draw(st.integers(0, 10)) for _ in range(n_series)]
        borders: tuple[int, ...] = (b0, b1, b2)
    else:  # (train_end, val_end): the test part runs to each series' end
        lengths = [b1 + H + draw(st.integers(0, 30)) for _ in range(n_series)]
        borders = (b0, b1)
    return {
        "L": L,
        "H": H,
        "stride": draw(st.integers(1, 6)),
        "lengths": lengths,
        "borders": borders,
        "seed": draw(st.integers(0, 2**16)),
        "scaling": draw(st.sampled_from(["per_series", "global"])),
    }


def _series_frame(lengths: list[int], values: np.ndarray | None = None) -> SeriesFrame:
    """Columns: target y, past covariate x, known covariate k; the row id in every column
    unless `values` is given (then [T, 3] float32)."""
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(bounds[-1])
    if values is None:
        row = np.arange(total, dtype=np.float32)
        values = np.stack([row, row + 0.5, -row], axis=1)  # exact in float32 (rows < 2**23)
    stamps = np.concatenate(
        [pd.date_range("2024-01-01", periods=n, freq="h").to_numpy() for n in lengths]
    )
    return SeriesFrame(
        values=values,
        timestamps=stamps.astype("datetime64[ns]"),
        bounds=bounds,
        series_ids=[f"s{i}" for i in range(len(lengths))] if len(lengths) > 1 else [""],
        targets=["y"],
        past_covariates=["x"],
        known_covariates=["k"],
        calendar_columns=[],
        freq="h",
    )


def _bundle(case: dict, frame: SeriesFrame, scaling: str) -> DataBundle:
    return prepare_data(
        frame,
        input_length=case["L"],
        horizon=case["H"],
        split=SplitSpec("borders", borders=case["borders"]),
        scaling=scaling,
        stride=case["stride"],
        period=1,
    )


@FAST
@given(frames())
def test_windows_stay_in_their_series_and_targets_in_their_part(case):
    frame = _series_frame(case["lengths"])
    data = _bundle(case, frame, "none")  # unscaled: every value is its global row id
    L, H = case["L"], case["H"]
    bounds = frame.bounds
    for part in PARTS:
        ds = data.part(part)
        stride = 1 if part == "train" else case["stride"]
        expected = sum(
            len(part_starts(b, part, L, H, stride)) for b in data.borders
        )  # every window of every series, nothing more
        assert (0 if ds is None else len(ds)) == expected, part
        if ds is None:
            continue
        batch = ds.batch(np.arange(len(ds)))
        starts = ds.starts
        series = batch["series_index"].numpy()
        assert np.array_equal(series, np.asarray(ds.series_index, dtype=np.int64))
        series_lo = bounds[series]
        part_lo = np.array([_part_rows(data.borders[s], part)[0] for s in series]) + series_lo
        part_hi = np.array([_part_rows(data.borders[s], part)[1] for s in series]) + series_lo
        # Inputs inside the window's own series (may reach back before the part) ...
        assert (starts >= series_lo).all() and (starts + L + H <= bounds[series + 1]).all()
        # ... and every target row inside the window's part: none in a later part.
        targets = ds.target_rows()
        assert (targets >= part_lo[:, None]).all() and (targets < part_hi[:, None]).all()
        if part == "train":
            assert (starts + L + H <= part_hi).all()
        # The tensors are exactly those rows.
        rows_in = starts[:, None] + np.arange(L)[None, :]
        np.testing.assert_array_equal(batch["past_target"][..., 0].numpy(), rows_in)
        np.testing.assert_array_equal(batch["past_covariates"][..., 0].numpy(), rows_in + 0.5)
        np.testing.assert_array_equal(batch["past_known"][..., 0].numpy(), -rows_in)
        np.testing.assert_array_equal(batch["future_target"][..., 0].numpy(), targets)
        np.testing.assert_array_equal(batch["future_known"][..., 0].numpy(), -targets)
        np.testing.assert_array_equal(batch["origin"].numpy(), starts + L - 1)
        np.testing.assert_array_equal(ds.origin_rows(), batch["origin"].numpy())
        np.testing.assert_array_equal(targets[:, 0], ds.origin_rows() + 1)


# ---------------------------------------------------------------------- scaling
def _random_values(case: dict, total: int) -> np.ndarray:
    rng = np.random.default_rng(case["seed"])
    offset = rng.uniform(-1e3, 1e3, size=3)
    scale = 10.0 ** rng.uniform(-2, 3, size=3)
    values = (offset + scale * rng.standard_normal((total, 3))).astype(np.float32)
    if rng.random() < 0.2:  # a constant column: std falls back to 1
        values[:, rng.integers(3)] = np.float32(offset[0])
    return values


@FAST
@given(frames())
def test_scaler_uses_training_rows_only(case):
    total = sum(case["lengths"])
    values = _random_values(case, total)
    data = _bundle(case, _series_frame(case["lengths"], values.copy()), case["scaling"])
    lows = [int(lo) for lo in data.frame.bounds[:-1]]
    train = [values[lo : lo + b[0]].astype(np.float64) for lo, b in zip(lows, data.borders)]
    groups = [np.concatenate(train)] if case["scaling"] == "global" else train
    for g, block in enumerate(groups):
        np.testing.assert_allclose(data.scaler.mean_[g], block.mean(axis=0), rtol=1e-9, atol=1e-9)
        std = block.std(axis=0)
        std = np.where(std == 0, 1.0, std)
        np.testing.assert_allclose(data.scaler.std_[g], std, rtol=1e-9, atol=1e-12)

    # Any change to rows outside the training parts leaves the statistics bit-identical.
    changed = values.copy()
    rng = np.random.default_rng(case["seed"] + 1)
    for lo, b, n in zip(lows, data.borders, case["lengths"]):
        changed[lo + b[0] : lo + n] = rng.normal(1e4, 1e3, size=(n - b[0], 3))
    again = _bundle(case, _series_frame(case["lengths"], changed), case["scaling"])
    assert np.array_equal(again.scaler.mean_, data.scaler.mean_)
    assert np.array_equal(again.scaler.std_, data.scaler.std_)


@FAST
@given(frames())
def test_inverse_scaling_gives_back_the_original_values(case):
    total = sum(case["lengths"])
    values = _random_values(case, total)
    data = _bundle(case, _series_frame(case["lengths"], values.copy()), case["scaling"])
    for part in PARTS:
        ds = data.part(part)
        if ds is None:
            continue
        batch = ds.batch(np.arange(len(ds)))
        back = data.to_original(batch["future_target"].numpy(), ds)
        original = values[ds.target_rows(), :1].astype(np.float64)
        # The scaled series is float32: exact to float32 rounding of |x| and of the std.
        tol = 4 * np.finfo(np.float32).eps * (np.abs(original) + data.scaler.std_.max())
        assert (np.abs(back - original) <= tol).all(), np.abs(back - original).max()


@FAST
@given(
    n_series=st.integers(1, 4),
    rows=st.integers(1, 50),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["per_series", "global", "none"]),
)
def test_scaler_inverse_is_exact_in_float64(n_series, rows, seed, mode):
    rng = np.random.default_rng(seed)
    blocks = [
        rng.normal(rng.uniform(-100, 100), 10 ** rng.uniform(-3, 3), (rows, 2))
        for _ in range(n_series)
    ]
    scaler = StandardScaler(mode).fit(blocks)
    for s, x in enumerate(blocks):
        mean, std = scaler._stats(s)
        z = (x - mean) / std
        back = scaler.inverse(z[:, None, :], np.full(rows, s), slice(0, 2))[:, 0, :]
        np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12 * np.abs(x).max())
