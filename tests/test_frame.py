"""Validation: every bad input gets a clear ValueError naming what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast import ColumnRoles, prepare_data, prepare_frame

ROLES = ColumnRoles(("y",), ("x",), ("k",))


def test_valid_frame_orders_columns_by_role(hourly_frame):
    frame = prepare_frame(hourly_frame, ROLES)
    assert frame.columns[:3] == ["y", "x", "k"]
    # 12.5 days of hourly rows: the daily cycle only (a week needs two weeks of data).
    assert frame.calendar_columns == ["hour_sin", "hour_cos"]
    assert frame.values.dtype == np.float32 and frame.freq == "h"
    assert frame.role_slice("known_covariates") == slice(2, 5)


def test_calendar_features_are_cyclic_and_chosen_per_feature(hourly_frame):
    """sin/cos pairs: the last hour of a day sits next to the first; a chosen list is
    used as given, in order; bad names are named."""
    frame = prepare_frame(hourly_frame, ColumnRoles(("y",), calendar=["weekday", "hour"]))
    assert frame.calendar_columns == ["weekday_sin", "weekday_cos", "hour_sin", "hour_cos"]
    hour = frame.values[:, 3:5]  # hour_sin, hour_cos
    np.testing.assert_allclose((hour**2).sum(axis=1), 1.0, atol=1e-6)
    midnight, eleven_pm = hour[24], hour[23]  # 2024-01-02 00:00 and 2024-01-01 23:00
    assert np.linalg.norm(midnight - eleven_pm) < 0.27  # one 24th of the circle apart
    none = prepare_frame(hourly_frame, ColumnRoles(("y",), calendar=False))
    assert none.calendar_columns == [] and none.values.shape[1] == 1
    with pytest.raises(ValueError, match=r"unknown calendar feature\(s\) \['hours'\]; expected"):
        ColumnRoles(("y",), calendar=["hours"])


def test_default_calendar_follows_the_training_period():
    """No month or day-of-month features unless the training part spans two years: a
    month seen once is not a season (measured in the issue: they cost ridge 34 %)."""
    from forecast.data.calendar import default_calendar

    assert default_calendar("h", pd.Timedelta(days=300)) == ["hour", "weekday"]
    assert default_calendar("h", pd.Timedelta(days=800)) == ["hour", "weekday", "day", "month"]
    assert default_calendar("15min", pd.Timedelta(days=60)) == ["minute", "hour", "weekday"]
    assert default_calendar("D", pd.Timedelta(days=60)) == ["weekday"]
    assert default_calendar("h", pd.Timedelta(days=10)) == ["hour"]
    n = 24 * 500  # ~16 months: the 70 % training part spans ~11.5 months
    df = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="h"), "y": 1.0})
    df["y"] += np.sin(np.arange(n) / 7)
    data = prepare_data(df, ColumnRoles(("y",)), input_length=24, horizon=6)
    assert data.frame.calendar_columns == ["hour_sin", "hour_cos", "weekday_sin", "weekday_cos"]
    assert data.frame.meta["calendar"] == ["hour", "weekday"]


def test_datetime_index_is_accepted(hourly_frame):
    frame = prepare_frame(hourly_frame.set_index("date"), ColumnRoles(("y",), time_column=None))
    assert len(frame.values) == 300


def test_unknown_column(hourly_frame):
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['nope'\]; the frame has columns"):
        prepare_frame(hourly_frame, ColumnRoles(("y",), ("nope",)))


def test_column_with_two_roles():
    with pytest.raises(ValueError, match="column 'y' is given two roles: targets and past_cov"):
        ColumnRoles(("y",), ("y",))


def test_non_numeric_column(hourly_frame):
    hourly_frame["x"] = hourly_frame["x"].astype(object)
    hourly_frame.loc[5, "x"] = "n/a"
    with pytest.raises(ValueError, match=r"column 'x' is not numeric .* value 'n/a' at row 5"):
        prepare_frame(hourly_frame, ROLES)


def test_nan_is_reported_with_row_and_time(hourly_frame):
    hourly_frame.loc[7, "y"] = np.nan
    with pytest.raises(
        ValueError, match=r"column 'y' has 1 NaN/infinite .* NaN at row 7 \(2024-01-01 07:00:00\)"
    ):
        prepare_frame(hourly_frame, ROLES)


@pytest.mark.parametrize("policy", ["ffill", "interpolate", "zero"])
def test_nan_fill_policies(hourly_frame, policy):
    hourly_frame.loc[7, "y"] = np.nan
    frame = prepare_frame(hourly_frame, ROLES, fill=policy)
    expected = {
        "ffill": hourly_frame.loc[6, "y"],
        "zero": 0.0,
        "interpolate": (hourly_frame.loc[6, "y"] + hourly_frame.loc[8, "y"]) / 2,
    }[policy]
    assert frame.values[7, 0] == pytest.approx(expected, abs=1e-6)


def test_infinite_values_are_never_filled(hourly_frame):
    hourly_frame.loc[3, "x"] = np.inf
    with pytest.raises(ValueError, match=r"column 'x' .* first is infinite at row 3"):
        prepare_frame(hourly_frame, ROLES, fill="ffill")


def test_unknown_fill_policy(hourly_frame):
    with pytest.raises(ValueError, match=r"unknown fill policy 'mean'; expected one of"):
        prepare_frame(hourly_frame, ROLES, fill="mean")


def test_duplicate_timestamp(hourly_frame):
    hourly_frame.loc[10, "date"] = hourly_frame.loc[9, "date"]
    with pytest.raises(
        ValueError,
        match=r"duplicate timestamp 2024-01-01 09:00:00 at rows 9 and 10, with different",
    ):
        prepare_frame(hourly_frame, ROLES)


def test_unsorted_timestamps(hourly_frame):
    swapped = hourly_frame.iloc[[0, 1, 3, 2, *range(4, 300)]].reset_index(drop=True)
    with pytest.raises(ValueError, match=r"timestamps are not sorted: row 3 .* sort the frame"):
        prepare_frame(swapped, ROLES)


def test_gap_in_frequency(hourly_frame):
    gappy = hourly_frame.drop(index=[50, 51]).reset_index(drop=True)
    with pytest.raises(
        ValueError,
        match=r"gap in the 'h' frequency: row 50 is 2024-01-03 04:00:00 but "
        r"2024-01-03 02:00:00 was expected",
    ):
        prepare_frame(gappy, ROLES)


def test_unparseable_time_column(hourly_frame):
    hourly_frame["date"] = "yesterday"
    with pytest.raises(ValueError, match="time column 'date' could not be parsed"):
        prepare_frame(hourly_frame, ROLES)


def test_series_shorter_than_window(hourly_frame):
    with pytest.raises(
        ValueError,
        match=r"series has 300 rows, shorter than input_length \+ horizon = "
        r"290 \+ 24 = 314",
    ):
        prepare_data(hourly_frame, ROLES, input_length=290, horizon=24)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"input_length": 0, "horizon": 4}, "input_length must be positive, got 0"),
        ({"input_length": 24, "horizon": -1}, "horizon must be positive, got -1"),
        ({"input_length": 2.5, "horizon": 4}, "input_length must be a positive integer, got 2.5"),
        ({"input_length": 24, "horizon": 4, "stride": 0}, "stride must be positive, got 0"),
    ],
)
def test_non_positive_lengths(hourly_frame, kw, message):
    with pytest.raises(ValueError, match=message):
        prepare_data(hourly_frame, ROLES, **kw)


def test_not_a_dataframe():
    with pytest.raises(ValueError, match="expected a pandas DataFrame, got ndarray"):
        prepare_frame(np.zeros((3, 2)), ROLES)


def test_user_frame_is_not_modified(hourly_frame):
    before = hourly_frame.copy()
    prepare_data(hourly_frame, ROLES, input_length=24, horizon=4)
    pd.testing.assert_frame_equal(hourly_frame, before)


def test_long_format_gap_names_the_series():
    df = pd.DataFrame(
        {
            "id": ["a"] * 50 + ["b"] * 50,
            "date": list(pd.date_range("2024-01-01", periods=50, freq="D")) * 2,
            "y": np.arange(100.0),
        }
    ).drop(index=70)
    with pytest.raises(ValueError, match=r"gap in the 'D' frequency in series 'b': row 20"):
        prepare_frame(df, ColumnRoles(("y",), series_id="id"))
