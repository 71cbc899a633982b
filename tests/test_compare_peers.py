"""bench/compare_peers.py: every model entry still trains with today's models, the
pairs name real entries, and the speed-up table judges the targets.

The peer libraries live in a separate venv; only the toolkit's side is run here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from forecast.data.protocols import ETT_COLUMNS, ett_bundle

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def cp() -> ModuleType:
    """bench/compare_peers.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("compare_peers", BENCH / "compare_peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pairs_name_entries_and_targets_are_full_teacher_forcing(cp: ModuleType) -> None:
    for ours, theirs, target in cp.PAIRS:
        assert ours in cp.OURS and theirs in cp.peers.PEERS
        if target is not None:  # issue #16 judges full teacher forcing only, at >= 1.0x
            assert target == 1.0
            assert cp.OURS[ours][2]["teacher_forcing"] == 1.0
    assert set(cp.DEFAULT_OURS) <= set(cp.OURS)
    assert set(cp.DEFAULT_PEERS) <= set(cp.peers.PEERS)


def test_ratio_rows_judge_the_wall_clock_speed_up(cp: ModuleType) -> None:
    def timing(name: str, seconds: float) -> object:
        t = cp.peers.Timing(name, "lib", "0", name, "MS", 7, 100, "-")
        t.seconds, t.cpu_seconds = [seconds], [seconds]
        return t

    ours = {"lstm_ar_tf": timing("lstm_ar_tf", 2.0), "lstm_direct": timing("lstm_direct", 1.0)}
    theirs = {"nf_lstm": timing("nf_lstm", 1.9), "darts_rnn": timing("darts_rnn", 2.2)}
    rows = {(r["ours"], r["theirs"]): r for r in cp.ratio_rows(ours, theirs)}
    assert len(rows) == 4  # pairs with a side not run are left out
    assert rows[("lstm_ar_tf", "nf_lstm")]["met"] == "NO"  # 0.95x
    assert rows[("lstm_ar_tf", "darts_rnn")]["met"] == "yes"  # 1.1x
    assert rows[("lstm_ar_tf", "darts_rnn")]["target"] == ">= 1.0x"
    assert rows[("lstm_direct", "nf_lstm")]["met"] == "-"  # information only


@pytest.fixture(scope="module")
def ett_like() -> dict[str, object]:
    """An ETT-shaped frame (the protocol's 14,400 hourly rows), track MS bundle, L 24 H 6."""
    rng = np.random.default_rng(0)
    n = 14_400
    t = np.arange(n)
    frame = pd.DataFrame({c: np.sin(t / (5 + i)) + rng.normal(0, 0.1, n)
                          for i, c in enumerate(ETT_COLUMNS)})  # fmt: skip
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h").astype(str))
    return {"MS": ett_bundle(frame, "MS", 24, 6)}


@pytest.mark.parametrize(
    "name", ["lstm_ar_tf", "lstm_bahdanau_ar_tf", "lstm_classic_tf", "lstm_direct"]
)
def test_every_lstm_entry_trains_one_timed_epoch(
    cp: ModuleType, ett_like: dict, name: str, one_thread: None
) -> None:
    setup = cp.peers.Setup(input_length=24, horizon=6, hidden=8, threads=1, max_windows=64)
    measured = cp.time_ours(name, setup, ett_like)  # raises on a lag-prior epoch
    assert measured["seconds"] > 0 and measured["cpu_seconds"] > 0
    assert cp.n_windows(name, setup, ett_like) == 64
