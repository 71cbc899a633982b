"""Shared fixtures: small generated frames, and the benchmark file when it is present.

A test that needs a reference file (e.g. `../shared/data/ETTh1.csv`) asks for it through
`reference_file`: it is skipped when the file is missing, except under CI (`CI=true`),
where a missing reference file fails the run instead.
"""

from __future__ import annotations

import os
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
    from forecast import threads as forecast_threads

    threads, choice = torch.get_num_threads(), forecast_threads.current()
    forecast_threads.apply(1)  # fit's threads='auto' keeps a count set this way
    yield
    forecast_threads._CHOICE = choice
    torch.set_num_threads(threads)


def reference_file(path: Path, hint: str = "") -> Path:
    """`path` if it is a file; otherwise skip the test, or fail it under CI (`CI=true`).

    Args:
        path: the reference file a test needs.
        hint: how to provide it, added to the message.
    """
    if path.is_file():
        return path
    message = f"reference file not found at {path}" + (f" ({hint})" if hint else "")
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; under CI=true a missing reference file is an error")
    pytest.skip(message)


@pytest.fixture
def etth1_path() -> Path:
    """The benchmark ETTh1 file (see `reference_file`)."""
    return reference_file(ETTH1)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's stderr, asserted to be one `error: ...` line without a traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]
