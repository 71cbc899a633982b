"""Fits as Ray tasks (`run.executor = "ray"`): a local cluster on 127.0.0.1 with 2 CPUs,
started by this module, runs a 2-model x 2-seed grid (plus the baselines every run adds)
to the local executor's leaderboard bitwise, and a driver killed mid-run resumes by
refitting only the fits it had not stored."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_experiment
from forecast.config import load_config
from forecast.experiment import run
from tests.conftest import one_error_line

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[distributed]'")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
models = ["lstm_plain", "linear"]
[run]
seeds = [0, 1]
threads = 1
progress = false
plots = false
predictions = "none"
output_dir = "."
[data]
synthetic_rows = 800
input_length = 24
horizon = 6
[train]
epochs = 2
max_train_windows = 64
max_val_windows = 32
batch_size = 32
[model.lstm_plain]
hidden_size = 8
"""
BOARD = ["model", "kind", "mse", "mse_std", "mae", "mae_std", "rmse", "smape", "mase"]
TABLES = {
    "leaderboard.csv": BOARD + ["skill_vs_naive", "dm_stat", "dm_p_value"],
    "metrics_per_seed.csv": ["model", "seed", "mse", "mae", "orig_mse", "orig_mae", "mase"],
    "per_horizon.csv": ["model", "step", "mse", "mae"],
}


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    """A 2-CPU Ray cluster on 127.0.0.1 whose workers import this checkout; its GCS
    address. Stopped at the end of the module."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)  # inherited by the cluster's worker processes
    try:
        info = ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
        yield info.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray_exec") / "exp.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def local_run(config) -> Path:
    return run(load_config(config, overrides=["run.name=local"])).run_dir


def _same_results(a: Path, b: Path) -> None:
    for table, cols in TABLES.items():
        pd.testing.assert_frame_equal(
            pd.read_csv(a / table)[cols], pd.read_csv(b / table)[cols], check_exact=True
        )
    for path in sorted(a.glob("results/*/seed*.npz")):
        with np.load(path) as x, np.load(b / path.relative_to(a)) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:  # predictions (and the first seed's interval band)
                np.testing.assert_array_equal(x[key], y[key])


# Before the tests that connect this process to the module's cluster (a connected process
# keeps its connection and ignores run.address).
def test_unreachable_address_is_one_error_line_and_no_run_folder(config, capsys, tmp_path):
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    args = ["--config", str(config), "--executor", "ray", "--output-dir", str(tmp_path)]
    assert run_experiment.main([*args, "--address", f"127.0.0.1:{port}"]) == 2
    assert f"127.0.0.1:{port}" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_ray_grid_gives_the_local_leaderboard_bitwise(config, address, local_run):
    cfg = load_config(
        config, overrides=["run.name=on_ray", "run.executor=ray", f"run.address={address}"]
    )
    ray_dir = run(cfg).run_dir
    _same_results(local_run, ray_dir)
    stored = pd.read_json(ray_dir / "config.json", typ="series")["config"]["run"]
    assert (stored["executor"], stored["address"]) == ("ray", address)
    fits = 2 * len(pd.read_csv(local_run / "leaderboard.csv"))  # baselines are always added
    assert len(list(ray_dir.glob("results/*/seed?.json"))) == fits
    assert len(list(ray_dir.glob("models/*_seed*.pt"))) == fits  # checkpoints sent back too
    assert not list(ray_dir.rglob(".*.tmp"))


def test_killed_ray_driver_resumes_with_the_missing_fits_only(config, address, local_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "run_experiment.py"), "--config", str(config)]
    args += ["--run-name", "killed", "--executor", "ray", "--address", address, "--quiet"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
    results = config.parent / "killed" / "results"
    deadline = time.monotonic() + 240
    while not list(results.glob("*/seed*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the Ray run never stored a result"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(results.glob("*/seed?.json"))
    fits = 2 * len(pd.read_csv(local_run / "leaderboard.csv"))
    assert 1 <= len(done) < fits and not (config.parent / "killed/leaderboard.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}

    folder = str(config.parent / "killed")
    assert run_experiment.main(["--resume", folder, "--address", address, "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # stored fits not redone
    refitted = {p for p in results.glob("*/seed?.json") if p not in stamps}
    assert len(refitted) == fits - len(done)
    _same_results(local_run, config.parent / "killed")


def test_address_without_ray_executor_is_one_error_line(config, capsys, tmp_path):
    code = run_experiment.main(
        ["--config", str(config), "--address", "127.0.0.1:1", "--output-dir", str(tmp_path)]
    )
    assert code == 2
    assert "run.address" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_missing_ray_is_one_error_line_and_no_run_folder(config, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    args = ["--config", str(config), "--executor", "ray", "--output-dir", str(tmp_path)]
    assert run_experiment.main(args) == 2
    assert "pip install -e '.[distributed]'" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())
