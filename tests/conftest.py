"""Shared fixtures: small generated frames, and the benchmark file when it is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ETTH1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"


@pytest.fixture
def hourly_frame() -> pd.DataFrame:
    """300 hourly rows: target y, past covariate x, known covariate k."""
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.sin(np.arange(n) / 5) + rng.normal(0, 0.1, n),
            "x": rng.normal(size=n),
            "k": np.cos(np.arange(n) / 7),
        }
    )


@pytest.fixture
def etth1_path() -> Path:
    if not ETTH1.exists():
        pytest.skip(f"benchmark file not found at {ETTH1}")
    return ETTH1
