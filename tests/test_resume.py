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
from forecast.config import ConfigError, DataConfig, ExperimentConfig, RunConfig
from forecast.experiment import resume, run
from forecast.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["model", "kind", "mse", "mse_std", "mae", "mae_std", "rmse", "smape", "mase"]
TINY = {"epochs": 2, "max_train_windows": 64, "max_val_windows": 32, "batch_size": 32}


def _cfg(tmp_path: Path, name: str) -> ExperimentConfig:
    return ExperimentConfig(
        models=["lstm_plain", "linear"],
        data=DataConfig(synthetic_rows=1000, input_length=36, horizon=8),
        run=RunConfig(seeds=[0, 1], output_dir=str(tmp_path), name=name, progress=False, threads=1),
        train=dict(TINY),
        model={"lstm_plain": {"hidden_size": 8}},
    )


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


def test_interrupted_run_resumes_to_the_uninterrupted_leaderboard(tmp_path, monkeypatch):
    full = run(_cfg(tmp_path, "full"))

    fresh_fits = []
    original = Runner.pair

    def interrupt_after_five(self, name, seed, log_reuse=True):
        if not self.is_done(name, seed):
            fresh_fits.append((name, seed))
            if len(fresh_fits) == 6:  # Ctrl-C while fitting the sixth pair
                raise KeyboardInterrupt
        return original(self, name, seed, log_reuse)

    monkeypatch.setattr(Runner, "pair", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(tmp_path, "cut"))
    monkeypatch.setattr(Runner, "pair", original)
    cut = tmp_path / "cut"
    done = sorted(cut.glob("results/*/seed*.json"))
    assert len(done) == 5 and not (cut / "leaderboard.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}
    (cut / "results/lstm_plain/.seed1.json.x.tmp").write_text("{half a fi")  # a killed write

    resumed = resume(cut)
    assert resumed.run_dir == cut
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished pairs not refitted
    assert len(list(cut.glob("results/*/seed*.json"))) == 2 * len(full.leaderboard)
    _same_results(full.run_dir, cut)
    assert (cut / "report.html").is_file()


def test_a_pair_without_its_done_marker_is_refitted(tmp_path):
    first = run(_cfg(tmp_path, "a"))
    marker = first.run_dir / "results/lstm_plain/seed1.json"
    marker.unlink()  # killed between the predictions and the marker
    (first.run_dir / "leaderboard.csv").unlink()
    again = resume(first.run_dir)
    assert marker.is_file()
    _same_results(tmp_path / "a", again.run_dir)


def test_resume_refuses_a_different_config(tmp_path):
    cfg, other = _cfg(tmp_path, "a"), _cfg(tmp_path, "a")
    cfg.models = other.models = ["linear"]
    first = run(cfg)
    other.data.horizon = 4
    with pytest.raises(ConfigError, match="holds a different config than the one given"):
        run(other, resume_dir=first.run_dir)
    with pytest.raises(ValueError, match="is not a run folder: it has no config.json"):
        resume(tmp_path / "nothing")


def test_killed_process_resumes_from_the_command_line(tmp_path, capsys):
    """SIGKILL a real run mid-way, then `--resume` it; compare with an uninterrupted run."""
    config = tmp_path / "exp.toml"
    config.write_text(
        'models = ["lstm_plain", "linear"]\n'
        "[run]\nseeds = [0, 1, 2]\nthreads = 1\nprogress = false\n"
        f'output_dir = "{tmp_path.as_posix()}"\n'
        "[data]\nsynthetic_rows = 1000\ninput_length = 36\nhorizon = 8\n"
        "[train]\nepochs = 3\nmax_train_windows = 256\nbatch_size = 32\n"
        "[model.lstm_plain]\nhidden_size = 8\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "run_experiment.py"), "--config", str(config)]
    proc = subprocess.Popen(
        [*args, "--run-name", "killed"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
    )
    results = tmp_path / "killed" / "results"
    deadline = time.monotonic() + 120
    while len(list(results.glob("*/seed*.json"))) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never wrote 4 results"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(results.glob("*/seed*.json")))
    assert 4 <= finished < 24 and not (tmp_path / "killed/leaderboard.csv").exists()

    assert run_experiment.main(["--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    assert run_experiment.main(["--config", str(config), "--run-name", "whole", "--quiet"]) == 0
    capsys.readouterr()
    _same_results(tmp_path / "whole", tmp_path / "killed")
