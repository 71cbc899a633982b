"""A run records the file it read and how it was found, not only the registered URL."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from forecast.config import config_from_dict
from forecast.data.registry import dataset_source, get_dataset_spec
from forecast.experiment import run

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


@pytest.fixture(autouse=True)
def _no_forecast_env(monkeypatch, tmp_path):
    """No caller FORECAST_* variables; the cache is a fresh folder."""
    for var in list(os.environ):
        if var.startswith("FORECAST_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("FORECAST_CACHE_DIR", str(tmp_path / "cache"))


def _ett_like(path) -> str:
    """A small hourly file with the ETT columns (its checksum differs: only a warning)."""
    n = 400
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n, 7)), columns=ETT_COLUMNS)
    df.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h"))
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return str(path)


def test_dataset_source_names_the_file_and_where_it_was_found(monkeypatch, tmp_path):
    url = get_dataset_spec("ETTh1").url
    assert dataset_source("ETTh1") == {
        "path": str(tmp_path / "cache" / "ETTh1.csv"),
        "from": "cache",
        "url": url,
    }
    in_dir = _ett_like(tmp_path / "dir" / "ETTh1.csv")
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path / "dir"))
    assert dataset_source("ETTh1")["path"] == in_dir
    assert dataset_source("ETTh1")["from"] == "FORECAST_DATA_DIR"
    env_file = _ett_like(tmp_path / "env" / "copy.csv")
    monkeypatch.setenv("FORECAST_DATA_ETTH1", env_file)
    assert dataset_source("etth1") == {"path": env_file, "from": "FORECAST_DATA_ETTH1", "url": url}
    mine = _ett_like(tmp_path / "mine.csv")
    assert dataset_source("ETTh1", data_path=mine)["from"] == "data_path"


def test_config_json_records_the_env_var_file_not_the_url(monkeypatch, tmp_path):
    env_file = _ett_like(tmp_path / "data" / "my-etth1.csv")
    monkeypatch.setenv("FORECAST_DATA_ETTH1", env_file)
    cfg = config_from_dict(
        {
            "models": ["naive"],
            "data": {
                "dataset": "ETTh1",
                "input_length": 24,
                "horizon": 6,
                "split": "fractions",
                "covariates": "none",
                "calendar": False,
            },
            "run": {"output_dir": str(tmp_path / "runs"), "name": "r", "progress": False},
        }
    )
    result = run(cfg)
    data = json.loads((result.run_dir / "config.json").read_text())["data"]
    assert data["source"] == env_file
    assert data["source_from"] == "FORECAST_DATA_ETTH1"
    assert data["source_url"] == get_dataset_spec("ETTh1").url
