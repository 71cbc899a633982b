"""Shared fixtures: small generated frames, and the benchmark file when it is present."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny networks: extra OpenMP threads only add
    hand-offs and spin-waits, which cost 10x on cores shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def etth1_path() -> Path:
    if not ETTH1.exists():
        pytest.skip(f"benchmark file not found at {ETTH1}")
    return ETTH1
