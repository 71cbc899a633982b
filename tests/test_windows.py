"""Splits, scaling on training rows only, and the one windowing implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, SplitSpec, prepare_data
from forecast.data.scaling import StandardScaler
from forecast.data.split import part_starts

ROLES = ColumnRoles(("y",), ("x",), ("k",))


def test_fraction_borders_follow_the_literature():
    assert SplitSpec("fractions").borders_for(1000) == (700, 800, 1000)
    assert SplitSpec("fractions", fractions=(0.6, 0.2, 0.2)).borders_for(101) == (60, 81, 101)


def test_ett_presets_and_minute_borders():
    assert SplitSpec("ett_hour").borders_for(17420) == (8640, 11520, 14400)
    assert SplitSpec("ett_minute").borders_for(69680) == (34560, 46080, 57600)


def test_preset_needs_enough_rows():
    with pytest.raises(
        ValueError, match="split 'ett_hour' needs 14400 rows but the series has 500"
    ):
        SplitSpec("ett_hour").borders_for(500)


def test_timestamp_split():
    times = pd.date_range("2024-01-01", periods=100, freq="D").to_numpy()
    spec = SplitSpec("timestamps", timestamps=("2024-02-10", "2024-03-01"))
    assert spec.borders_for(100, times) == (40, 60, 100)


def test_bad_split_specs():
    with pytest.raises(ValueError, match="unknown split kind 'random'"):
        SplitSpec("random")
    with pytest.raises(ValueError, match=r"summing to at most 1; got \(0.8, 0.3, 0.2\)"):
        SplitSpec("fractions", fractions=(0.8, 0.3, 0.2))


def test_part_starts_look_back_but_targets_stay_inside():
    b, L, H = (100, 130, 160), 24, 6
    val = part_starts(b, "val", L, H)
    assert val[0] == 100 - L and val[-1] + L + H == 130
    assert (val + L >= 100).all()
    train = part_starts(b, "train", L, H)
    assert train[-1] + L + H == 100


def test_batch_matches_manual_slicing(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    ds, i = data.test, 5
    item = ds[i]
    s = int(ds.starts[i])
    v = data.frame.values
    np.testing.assert_array_equal(item["past_target"].numpy(), v[s : s + 24, :1])
    np.testing.assert_array_equal(item["past_covariates"].numpy(), v[s : s + 24, 1:2])
    np.testing.assert_array_equal(item["past_known"].numpy(), v[s : s + 24, 2:])
    np.testing.assert_array_equal(item["future_known"].numpy(), v[s + 24 : s + 30, 2:])
    np.testing.assert_array_equal(item["future_target"].numpy(), v[s + 24 : s + 30, :1])
    assert int(item["origin"]) == s + 23


def test_every_test_window_at_stride_one(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    b = data.borders[0]
    assert len(data.test) == (b[2] - b[1]) - 6 + 1
    batches = list(data.test.iter_batches(7))
    assert sum(len(x["origin"]) for x in batches) == len(data.test)  # no dropped last batch


def test_windows_share_memory_with_the_series(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    assert data.train.data.data_ptr() == data.test.data.data_ptr()
    assert np.shares_memory(data.train.data.numpy(), data.frame.values)
    assert data.train._windows.untyped_storage().data_ptr() == data.train.data.data_ptr()


def test_scaler_sees_training_rows_only(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    n_train = data.borders[0][0]
    changed = hourly_frame.copy()
    changed.loc[n_train:, ["y", "x", "k"]] *= 100.0
    other = prepare_data(changed, ROLES, input_length=24, horizon=6)
    np.testing.assert_array_equal(data.scaler.mean_, other.scaler.mean_)
    np.testing.assert_array_equal(data.scaler.std_, other.scaler.std_)
    expected = hourly_frame.loc[: n_train - 1, "y"]
    assert data.scaler.mean_[0, 0] == pytest.approx(expected.mean())
    assert data.scaler.std_[0, 0] == pytest.approx(expected.std(ddof=0))


def test_inverse_transform_recovers_original_units(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    target = np.stack([data.test[i]["future_target"].numpy() for i in range(len(data.test))])
    original = data.to_original(target, data.test)
    rows = data.test.target_rows()
    np.testing.assert_allclose(original[..., 0], hourly_frame["y"].to_numpy()[rows], atol=1e-5)


def test_calendar_features_are_not_scaled(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    hour = data.frame.values[:, data.frame.columns.index("hour_sin")]
    assert hour.min() == pytest.approx(-1.0, abs=1e-6) and hour.max() == pytest.approx(1.0)


def test_constant_column_warns_and_keeps_std_one(caplog):
    scaler = StandardScaler("global").fit([np.ones((10, 1))], ["flat"])
    assert scaler.std_[0, 0] == 1.0
    assert "['flat'] are constant on the training rows" in caplog.text


def test_multi_series_windows_never_cross_a_boundary():
    frames = [
        pd.DataFrame(
            {
                "sid": s,
                "date": pd.date_range("2024-01-01", periods=n, freq="h"),
                "y": np.full(n, float(i * 10)) + np.arange(n) * 0.01,
            }
        )
        for i, (s, n) in enumerate([("a", 120), ("b", 90)])
    ]
    df = pd.concat(frames, ignore_index=True)
    data = prepare_data(
        df,
        ColumnRoles(("y",), series_id="sid", calendar=False),
        input_length=12,
        horizon=4,
        scaling="none",
    )
    for ds in (data.train, data.val, data.test):
        for i in range(len(ds)):
            s = int(ds.series_index[i])
            lo, hi = data.frame.bounds[s], data.frame.bounds[s + 1]
            assert lo <= ds.starts[i] and ds.starts[i] + 16 <= hi
    # Series b's test windows start 12 rows before its own validation end.
    b = data.test.starts[data.test.series_index == 1]
    assert b[0] == 120 + data.borders[1][1] - 12


def test_per_series_and_global_scaling_differ():
    df = pd.DataFrame(
        {
            "sid": ["a"] * 100 + ["b"] * 100,
            "date": list(pd.date_range("2024-01-01", periods=100, freq="h")) * 2,
            "y": np.r_[np.arange(100.0), 1000 + 5 * np.arange(100.0)],
        }
    )
    roles = ColumnRoles(("y",), series_id="sid", calendar=False)
    per = prepare_data(df, roles, input_length=12, horizon=4, scaling="per_series")
    glob = prepare_data(df, roles, input_length=12, horizon=4, scaling="global")
    assert per.scaler.mean_.shape == (2, 1) and glob.scaler.mean_.shape == (1, 1)
    assert per.scaler.mean_[1, 0] == pytest.approx(1000 + 5 * 34.5)
    # Original units come back exactly either way.
    for data in (per, glob):
        y = np.stack([data.test[i]["future_target"].numpy() for i in range(len(data.test))])
        back = data.to_original(y, data.test)[..., 0]
        np.testing.assert_allclose(back, df["y"].to_numpy()[data.test.target_rows()], rtol=1e-5)


def test_shuffled_batches_are_seeded(hourly_frame):
    data = prepare_data(hourly_frame, ROLES, input_length=24, horizon=6)
    first = [
        b["origin"]
        for b in data.train.iter_batches(
            16, shuffle=True, generator=torch.Generator().manual_seed(3)
        )
    ]
    again = [
        b["origin"]
        for b in data.train.iter_batches(
            16, shuffle=True, generator=torch.Generator().manual_seed(3)
        )
    ]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sorted(torch.cat(first).tolist()) == sorted((data.train.starts + 23).tolist())


def test_windows_as_runs_equal_the_same_windows_as_arrays():
    """`from_runs` (what `prepare_data` builds: a few numbers per series) gives the same
    windows, batches and subsets as the explicit start and series arrays."""
    from forecast.data.windows import WindowDataset, WindowLayout

    lay = WindowLayout(3, 2, ("y",), ("x",))
    data = torch.arange(80, dtype=torch.float32).reshape(40, 2)
    firsts, counts, series = np.array([0, 12, 20, 24]), np.array([4, 0, 3, 5]), np.arange(4)
    runs = WindowDataset.from_runs(data, firsts, counts, 2, lay, series)
    starts = np.concatenate([f + 2 * np.arange(c) for f, c in zip(firsts, counts)])
    sidx = np.repeat(series, counts).astype(np.int32)
    arrays = WindowDataset(data, starts, lay, sidx)
    assert len(runs) == len(arrays) == 12
    pick = np.array([11, 0, 5, 4, 3, 7])
    for a, b in ((runs.batch(pick), arrays.batch(pick)), (runs[6], arrays[6])):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    mask = np.arange(12) % 3 == 0
    assert runs.subset(mask).starts.tolist() == arrays.subset(mask).starts.tolist()
    assert runs.subset(pick).series_index.tolist() == sidx[pick].tolist()
    assert runs.starts.tolist() == starts.tolist()
    assert runs.series_index.tolist() == sidx.tolist()
    one = WindowDataset.from_runs(data, np.array([1]), np.array([5]), 1, lay, np.array([0]))
    assert one.series_index.strides == (0,)  # one series: a zero-stride view
    with pytest.raises(ValueError, match="window starts out of range for a series of 40"):
        WindowDataset.from_runs(data, np.array([30]), np.array([4]), 2, lay, np.array([0]))


def test_prepare_data_holds_a_few_numbers_per_series_not_per_window():
    frame = pd.DataFrame(
        {
            "sid": np.repeat(["a", "b", "c"], 60),
            "date": np.tile(pd.date_range("2024-01-01", periods=60, freq="h"), 3),
            "y": np.arange(180.0) % 7,
        }
    )
    roles = ColumnRoles(("y",), calendar=False, series_id="sid")
    bundle = prepare_data(frame, roles, input_length=6, horizon=2)
    firsts, offsets, stride, series = bundle.train._runs
    assert len(firsts) == len(series) == 3 and offsets[-1] == len(bundle.train) == 3 * 35
    assert bundle.train._starts is None  # nothing per window until asked for
    assert bundle.train.series_index.tolist() == [0] * 35 + [1] * 35 + [2] * 35
    assert bundle.train.starts[[0, 35, 70]].tolist() == [0, 60, 120]
