"""An interrupted experiment resumes to the same leaderboard as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import run_experiment
from forecast.config import ConfigError, load_config
from forecast.experiment import resume, run
from forecast.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["model", "kind", "mse", "mse_std", "mae", "mae_std", "rmse", "smape", "mase"]
CONFIG = """
models = ["lstm_plain", "linear"]
[run]
seeds = [0, 1]
threads = 1
progress = false
plots = false
output_dir = "."  # relative to this file's folder
[data]
synthetic_rows = 1000
input_length = 36
horizon = 8
[train]
epochs = 2
max_train_windows = 96
max_val_windows = 32
batch_size = 32
[model.lstm_plain]
hidden_size = 8
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "exp.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def uninterrupted(config) -> Path:
    cfg = load_config(config, overrides=["run.name=whole"])
    return run(cfg).run_dir


def _same_results(a: Path, b: Path) -> None:
    for table, cols in [
        ("leaderboard.csv", METRICS + ["skill_vs_naive", "dm_stat", "dm_p_value"]),
        ("metrics_per_seed.csv", ["model", "seed", "mse", "mae", "orig_mse", "mase"]),
        ("significance.csv", ["model", "dm_stat", "dm_p_value"]),
        ("per_horizon.csv", ["model", "step", "mse", "mae"]),
    ]:
        pd.testing.assert_frame_equal(
            pd.read_csv(a / table)[cols], pd.read_csv(b / table)[cols], check_exact=True
        )


def test_interrupted_run_resumes_to_the_uninterrupted_leaderboard(
    config, uninterrupted, monkeypatch
):
    fresh_fits = []
    original = Runner.pair

    def interrupt_at_the_sixth_fit(self, name, seed, log_reuse=True):
        if not self.is_done(name, seed):
            fresh_fits.append((name, seed))
            if len(fresh_fits) == 6:  # Ctrl-C while fitting the sixth pair
                raise KeyboardInterrupt
        return original(self, name, seed, log_reuse)

    monkeypatch.setattr(Runner, "pair", interrupt_at_the_sixth_fit)
    with pytest.raises(KeyboardInterrupt):
        run(load_config(config, overrides=["run.name=cut"]))
    monkeypatch.setattr(Runner, "pair", original)
    cut = config.parent / "cut"
    done = sorted(cut.glob("results/*/seed*.json"))
    assert len(done) == 5 and not (cut / "leaderboard.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}
    (cut / "results/lstm_plain/.seed1.json.x.tmp").write_text("{half a fi")  # a killed write

    resumed = resume(cut)
    assert resumed.run_dir == cut
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished pairs not refitted
    assert len(list(cut.glob("results/*/seed*.json"))) == 2 * len(resumed.leaderboard)
    _same_results(uninterrupted, cut)

    # killed between writing a pair's predictions and its done-marker: that pair is refitted
    marker = cut / "results/lstm_plain/seed1.json"
    marker.unlink()
    (cut / "leaderboard.csv").unlink()
    resume(cut)
    assert marker.is_file()
    _same_results(uninterrupted, cut)


def test_resume_refuses_a_different_config(config, uninterrupted):
    other = load_config(config, overrides=["data.horizon=4"])
    with pytest.raises(ConfigError, match="holds a different config than the one given"):
        run(other, resume_dir=uninterrupted)
    with pytest.raises(ValueError, match="is not a run folder: it has no config.json"):
        resume(config.parent / "nothing")


def test_killed_process_resumes_from_the_command_line(config, uninterrupted):
    """SIGKILL a real run mid-way, then `--resume` it; compare with an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "run_experiment.py"), "--config", str(config)]
    proc = subprocess.Popen([*args, "--run-name", "killed"], env=env, stderr=subprocess.DEVNULL)
    results = config.parent / "killed" / "results"
    deadline = time.monotonic() + 120
    while len(list(results.glob("*/seed*.json"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never wrote 3 results"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(results.glob("*/seed*.json")))
    assert 3 <= finished < 18 and not (config.parent / "killed/leaderboard.csv").exists()

    assert run_experiment.main(["--resume", str(config.parent / "killed"), "--quiet"]) == 0
    _same_results(uninterrupted, config.parent / "killed")


def test_worker_pool_stores_the_same_results(config, uninterrupted):
    """Pool processes send each pair's files back; this process stores them."""
    pooled = run(load_config(config, overrides=["run.name=pool", "run.workers=2"])).run_dir
    _same_results(uninterrupted, pooled)
    assert len(list(pooled.glob("models/*.pt"))) == len(list(uninterrupted.glob("models/*.pt")))
    assert not list(pooled.rglob(".*.tmp"))
