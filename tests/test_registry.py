"""The dataset registry: descriptions in datasets/*.toml and where a dataset's file is found."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from forecast.data.registry import (
    SPLIT_PROTOCOLS,
    DatasetSpec,
    dataset_path,
    default_cache_dir,
    get_dataset_spec,
    list_datasets,
    load_dataset,
)
from tests.conftest import reference_file

ETTH1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
NAMES = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange_rate", "weather"]
TOY_CSV = b"date,a,OT\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,3,4\n"
TOY = DatasetSpec(
    name="toy",
    description="two hourly rows",
    url="http://127.0.0.1:9/never-contacted",
    filename="toy.csv",
    sha256=hashlib.sha256(TOY_CSV).hexdigest(),
    freq="h",
    time_column="date",
    targets=("OT",),
    columns=("a", "OT"),
    split="ratio",
    seasonal_period=24,
    ratios=(0.7, 0.1, 0.2),
)


@pytest.fixture(autouse=True)
def _no_forecast_env(monkeypatch, tmp_path):
    """Tests never see the caller's FORECAST_* variables nor touch the real cache."""
    for var in list(os.environ):
        if var.startswith("FORECAST_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("FORECAST_CACHE_DIR", str(tmp_path / "default-cache"))


def _csv(path: Path, content: bytes = TOY_CSV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_all_six_datasets_are_listed():
    assert list_datasets() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_specs_are_well_formed(name):
    spec = get_dataset_spec(name)
    assert spec.name == name
    assert spec.url.startswith("https://")
    assert spec.url.rsplit("/", 1)[1] == spec.filename
    pd.tseries.frequencies.to_offset(spec.freq)
    assert spec.split in SPLIT_PROTOCOLS
    assert (spec.ratios is not None) == (spec.split == "ratio")
    assert spec.time_column == "date"
    assert set(spec.targets) <= set(spec.columns)
    assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert spec.seasonal_period > 0


def test_lookup_ignores_case():
    assert get_dataset_spec("etth1") is get_dataset_spec("ETTH1")
    assert get_dataset_spec("Weather").name == "weather"


def test_unknown_name_lists_the_known_ones():
    message = (
        "unknown dataset 'ETTh3'; known datasets: "
        "ETTh1, ETTh2, ETTm1, ETTm2, exchange_rate, weather"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        get_dataset_spec("ETTh3")


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "default-cache"
    monkeypatch.delenv("FORECAST_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "forecast"


def test_explicit_path_wins_and_a_modified_copy_only_warns(monkeypatch, tmp_path, caplog):
    mine = _csv(tmp_path / "mine.csv")
    monkeypatch.setenv("FORECAST_DATA_ETTH1", str(_csv(tmp_path / "env.csv")))
    with caplog.at_level(logging.WARNING, logger="forecast.data.registry"):
        assert dataset_path("ETTh1", data_path=mine) == mine
    assert "but dataset ETTh1 is registered with f18de3ad" in caplog.text
    assert "using it anyway" in caplog.text


def test_env_var_per_dataset(monkeypatch, tmp_path):
    env_file = _csv(tmp_path / "somewhere" / "etth1-copy.csv")
    monkeypatch.setenv("FORECAST_DATA_ETTH1", str(env_file))
    monkeypatch.setenv("FORECAST_DATA_DIR", str(_csv(tmp_path / "dir" / "ETTh1.csv").parent))
    assert dataset_path("etth1") == env_file


def test_env_var_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("FORECAST_DATA_ETTH1", str(tmp_path / "gone.csv"))
    message = f"FORECAST_DATA_ETTH1 points to {tmp_path / 'gone.csv'}, which is not a file"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        dataset_path("ETTh1")


def test_data_dir(monkeypatch, tmp_path):
    in_dir = _csv(tmp_path / "data" / "toy.csv")
    monkeypatch.setenv("FORECAST_DATA_DIR", str(in_dir.parent))
    assert dataset_path(TOY, cache_dir=tmp_path / "cache") == in_dir


def test_cached_file_is_used_without_download(tmp_path):
    cached = _csv(tmp_path / "cache" / "toy.csv")
    assert dataset_path(TOY, cache_dir=tmp_path / "cache", download=False) == cached
    assert dataset_path(TOY, cache_dir=tmp_path / "cache") == cached  # url is never contacted


def test_missing_everywhere_without_download(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match="dataset 'toy' not found: no data_path, no "
        "FORECAST_DATA_TOY, no toy.csv in FORECAST_DATA_DIR, not in the cache",
    ):
        dataset_path(TOY, cache_dir=tmp_path / "cache", download=False)


def test_load_dataset_parses_time_and_checks_columns(tmp_path):
    frame, spec = load_dataset(TOY, data_path=_csv(tmp_path / "toy.csv"))
    assert spec is TOY
    assert list(frame.columns) == ["date", "a", "OT"]
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])

    short = _csv(tmp_path / "short.csv", b"date,OT\n2020-01-01,1\n")
    message = f"{short} is missing the columns ['a'] of dataset toy; found ['date', 'OT']"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset(TOY, data_path=short)


def test_header_bytes_that_are_not_utf8_become_replacement_chars(tmp_path):
    spec = dataclasses.replace(TOY, sha256="", columns=("SWDR (W/m\ufffd)", "OT"))
    latin1 = _csv(
        tmp_path / "w.csv", "date,SWDR (W/m\u00b2),OT\n2020-01-01,1,2\n".encode("latin-1")
    )
    frame, _ = load_dataset(spec, data_path=latin1)
    assert list(frame.columns) == ["date", "SWDR (W/m\ufffd)", "OT"]


def test_unparseable_time_column(tmp_path):
    bad = _csv(tmp_path / "bad.csv", b"date,a,OT\nnot a date,1,2\n")
    with pytest.raises(ValueError, match="time column 'date' of dataset toy could not be parsed"):
        load_dataset(TOY, data_path=bad)


GOOD_TOML = """
name = "toy"
description = "d"
url = "https://example.org/toy.csv"
filename = "toy.csv"
sha256 = ""
freq = "h"
time_column = "date"
targets = ["OT"]
columns = ["OT"]
split = "ratio"
ratios = [0.7, 0.1, 0.2]
seasonal_period = 24
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('freq = "h"\n', "", r"is missing the keys \['freq'\]"),
        ('freq = "h"', 'freq = "fortnightly"', "freq 'fortnightly' is not a pandas frequency"),
        ('split = "ratio"', 'split = "random"', "unknown split 'random'; expected one of"),
        ("ratios = [0.7, 0.1, 0.2]", "ratios = [0.7, 0.1]", "split 'ratio' needs ratios"),
        ('targets = ["OT"]', 'targets = ["Y"]', r"targets \['Y'\] are not in columns \['OT'\]"),
        ('sha256 = ""', 'sha256 = "abc"', "sha256 must be 64 hex characters or \"\", got 'abc'"),
        ("seasonal_period = 24", "seasonal_period = 0", "seasonal_period must be a positive"),
        ("seasonal_period = 24", "seasonal_period = 24\nrows = 3", r"unknown keys \['rows'\]"),
    ],
)
def test_bad_description_files(tmp_path, old, new, message):
    path = tmp_path / "toy.toml"
    assert DatasetSpec.from_toml(_toml(path, GOOD_TOML)).ratios == (0.7, 0.1, 0.2)
    with pytest.raises(ValueError, match=message):
        DatasetSpec.from_toml(_toml(path, GOOD_TOML.replace(old, new)))


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_real_etth1(caplog):
    reference_file(ETTH1)
    with caplog.at_level(logging.WARNING, logger="forecast.data.registry"):
        frame, spec = load_dataset("ETTh1", data_path=ETTH1)
    assert caplog.records == []  # the shared copy matches the registered sha256
    assert frame.shape == (17420, 8)
    assert list(frame.columns) == ["date", *ETT_COLUMNS]
    assert list(spec.columns) == ETT_COLUMNS
    assert frame["date"].iloc[0] == pd.Timestamp("2016-07-01 00:00:00")
