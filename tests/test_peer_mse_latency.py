"""bench/peers/peer_mse_latency.py: the peers get the protocol's own scaled test windows,
and bench/run_all.py says so when the peer venv is absent.

The peer libraries live in a separate venv: their run is a slow test that skips without
them (`pytest -m slow` in the benchmark venv).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from forecast.data.protocols import ETT_COLUMNS, ett_bundle

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str, path: Path) -> ModuleType:
    """A bench script as a module (scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pml() -> ModuleType:
    return load("peer_mse_latency", BENCH / "peers" / "peer_mse_latency.py")


@pytest.fixture(scope="module")
def ett_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ETT-shaped CSV: the protocol's 14,400 hourly rows."""
    rng = np.random.default_rng(0)
    n = 14_400
    t = np.arange(n)
    frame = pd.DataFrame({c: 5 + np.sin(t / (5 + i)) + rng.normal(0, 0.1, n)
                          for i, c in enumerate(ETT_COLUMNS)})  # fmt: skip
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h").astype(str))
    path = tmp_path_factory.mktemp("ett") / "ETTh1.csv"
    frame.to_csv(path, index=False)
    return path


def test_task_is_the_protocols_scaled_test_windows(pml: ModuleType, ett_csv: Path) -> None:
    task = pml.load_task(ett_csv, 24, 6, None)
    bundle = ett_bundle(pd.read_csv(ett_csv), "U", 24, 6)
    n = len(bundle.test)
    assert task.inputs.shape == (n, 24) and task.targets.shape == (n, 6)
    batch = bundle.test.batch(np.arange(n))
    np.testing.assert_array_equal(task.targets, batch["future_target"][..., 0].numpy())
    assert len(task.train) == 8640 and abs(task.train["OT"].mean()) < 1e-4  # z-scored there
    np.testing.assert_array_equal(task.inputs[1:, :-1], task.inputs[:-1, 1:])  # stride 1
    assert (np.diff(task.input_dates, axis=1) == np.timedelta64(1, "h")).all()
    assert len(pml.load_task(ett_csv, 24, 6, 10).inputs) == 10


def test_run_all_says_not_measured_without_the_peer_venv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all = load("run_all", BENCH / "run_all.py")
    monkeypatch.setattr(run_all, "PEER_VENV", Path("/nonexistent/python"))
    run_all.run_peers("mse", 0.03, True, 1)
    assert "NOT measured" in capsys.readouterr().out
    run_all.run_peers("predict", 0.03, True, 1)  # once per process
    assert "printed in the mse section" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nf_lstm", "darts_rnn"])
def test_peer_trains_traces_and_times(pml: ModuleType, ett_csv: Path, name: str) -> None:
    pytest.importorskip({"nf_lstm": "neuralforecast", "darts_rnn": "darts"}[name])
    pml.pt.quiet()
    setup = pml.pt.Setup(data_path=ett_csv, input_length=24, horizon=6, hidden=8, threads=1)
    task = pml.load_task(ett_csv, 24, 6, 50)
    args = argparse.Namespace(epochs=2, target=10.0, latency_runs=2, throughput_runs=1)
    out = pml.run_peer(name, task, setup, args)
    assert [t["epoch"] for t in out["trace"]] == [1, 2]
    assert 0 < out["trace"][0]["train_seconds"] < out["trace"][1]["train_seconds"]
    assert out["first_epoch_at_target"] == 1  # any finite MSE is <= 10
    assert out["one_window_ms"] > 0 and out["windows_per_s"] > 0
