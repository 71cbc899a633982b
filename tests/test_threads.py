"""forecast.threads: the auto choice (a pure function), set-once, the OpenMP policy set
before torch loads, and the record in the run's environment manifest."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import threadpoolctl
import torch

from forecast import threads
from forecast.runs import environment_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 2.0, 1), (2, 7.5, 1), (16, 3.0, 8), (1, 0.0, 1)],
)
def test_auto_uses_the_free_cores(cores, load, expected):
    choice = threads.choose(cores, load, "auto", "passive")
    assert (choice.threads, choice.warning, choice.requested) == (expected, None, "auto")
    assert (choice.cores, choice.load, choice.policy) == (cores, load, "passive")


def test_explicit_count_in_the_slow_regime_warns():
    busy = threads.choose(2, 2.0, 2, "libgomp default")
    assert busy.threads == 2  # the user's count is kept, with a warning naming the fix
    assert "threads=2 with 0.0 of 2 cores free (load 2.0)" in busy.warning
    assert "threads='auto' picks 1" in busy.warning
    spin = threads.choose(4, 1.0, 2, "user: OMP_WAIT_POLICY=ACTIVE")
    assert "OMP_WAIT_POLICY=ACTIVE with threads=2 under load 1.0" in spin.warning
    assert threads.choose(2, 0.1, 2, "user: OMP_WAIT_POLICY=ACTIVE").warning is None
    assert threads.choose(2, 2.0, 1, "user: OMP_WAIT_POLICY=ACTIVE").warning is None
    assert threads.choose(8, 1.0, 4, "libgomp default").warning is None


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_bad_request_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="threads must be 'auto' or an integer >= 1, got"):
        threads.choose(2, 0.0, bad, "")


def test_policy_is_passive_only_on_a_busy_machine():
    assert threads.openmp_policy(2, 0.3) == "default"
    assert threads.openmp_policy(2, 0.6) == "passive"
    assert threads.openmp_policy(16, 4.0) == "default"
    assert threads.policy_of({"FORECAST_OPENMP": "passive", "OMP_WAIT_POLICY": "PASSIVE"}) == (
        "passive"
    )
    assert threads.policy_of({"GOMP_SPINCOUNT": "0"}) == "user: GOMP_SPINCOUNT=0"
    assert "torch imported before forecast" in threads.policy_of({})


def test_prepare_leaves_the_users_settings_alone(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")  # restored afterwards
    monkeypatch.setattr(threads, "machine_load", lambda: 5.0)
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.prepare_openmp(env) is None and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"FORECAST_OPENMP": "off"}
    assert threads.prepare_openmp(env) is None and env == {"FORECAST_OPENMP": "off"}
    env = {}
    assert threads.prepare_openmp(env) == "passive"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "FORECAST_OPENMP": "passive"}
    assert threads.prepare_openmp(env) is None  # once: a worker inherits the parent's


def _child(code: str, **extra: str) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("FORECAST_OPENMP", *threads.OMP_VARIABLES)
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, **extra}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_import_forecast_sets_the_policy_before_torch():
    code = (
        "import os, sys, forecast; print(os.environ.get('FORECAST_OPENMP'), 'torch' in sys.modules)"
    )
    policy, torch_loaded = _child(code).split()
    assert policy in ("passive", "default") and torch_loaded == "False"
    late = "import torch, os, forecast; print(os.environ.get('FORECAST_OPENMP'))"
    assert _child(late) == "None"  # too late to matter: nothing set, and recorded so
    assert _child(late.replace("import torch, ", "import "), OMP_WAIT_POLICY="ACTIVE") == "None"


@pytest.fixture
def fresh(monkeypatch):
    """No choice made yet in this process; torch's count restored afterwards."""
    monkeypatch.setattr(threads, "_CHOICE", None)
    monkeypatch.setattr(threads, "_WARNED", set())
    before = torch.get_num_threads()
    # torch still at its default: auto decides (see test_auto_keeps_the_users_torch_count)
    monkeypatch.setattr(threads, "torch_default_threads", lambda env=None: before)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    blas = _blas_threads()
    yield monkeypatch
    torch.set_num_threads(before)
    if blas:
        threadpoolctl.threadpool_limits(limits=max(blas), user_api="blas")


def _blas_threads() -> list[int]:
    """Threads of every BLAS library loaded in this process (numpy's OpenBLAS)."""
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def test_apply_caps_numpys_blas_threads_like_torchs(fresh):
    import numpy as np

    np.linalg.lstsq(np.ones((4, 2)), np.ones(4), rcond=None)  # BLAS loaded
    assert _blas_threads(), "numpy's BLAS should be loaded"
    fresh.setattr(threads, "usable_cores", lambda: 2)
    fresh.setattr(threads, "machine_load", lambda: 0.0)
    threads.apply(1)
    assert _blas_threads() == [1] * len(_blas_threads())
    threads.apply(2)
    assert torch.get_num_threads() == 2 and set(_blas_threads()) == {2}


def test_auto_is_decided_once_per_process(fresh):
    fresh.setattr(threads, "usable_cores", lambda: 2)
    fresh.setattr(threads, "machine_load", lambda: 2.0)
    first = threads.apply("auto")
    assert first.threads == 1 and torch.get_num_threads() == 1
    fresh.setattr(threads, "machine_load", lambda: 0.0)  # our own training now counts
    assert threads.apply("auto") is first and torch.get_num_threads() == 1
    assert threads.apply(None) is first and threads.current() is first
    torch.set_num_threads(2)  # the user's, after the first decision: kept
    assert threads.apply("auto").requested == "auto (kept the user's 2)"
    assert torch.get_num_threads() == 2


def test_auto_keeps_the_users_torch_count(fresh, caplog):
    fresh.setattr(threads, "usable_cores", lambda: 2)
    fresh.setattr(threads, "machine_load", lambda: 2.0)
    fresh.setattr(threads, "torch_default_threads", lambda env=None: 2)
    torch.set_num_threads(3)  # the user's, before forecast decides
    with caplog.at_level(logging.WARNING, logger="forecast.threads"):
        choice = threads.apply("auto")
    assert choice.threads == 3 and torch.get_num_threads() == 3
    assert choice.requested == "auto (kept the user's 3)" and "threads=3" in choice.warning
    assert len(caplog.records) == 1


def test_torch_default_threads_reads_the_environment():
    assert threads.torch_default_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert 1 <= threads.torch_default_threads({}) <= (os.cpu_count() or 1)


def test_auto_keeps_an_explicit_count(fresh):
    fresh.setattr(threads, "machine_load", lambda: 0.0)
    pinned = threads.apply(1)
    assert threads.apply("auto") is pinned and torch.get_num_threads() == 1


def test_slow_explicit_setting_warns_once(fresh, caplog):
    fresh.setattr(threads, "usable_cores", lambda: 2)
    fresh.setattr(threads, "machine_load", lambda: 2.0)
    with caplog.at_level(logging.WARNING, logger="forecast.threads"):
        threads.apply(2)
        threads.apply(2)
    assert len(caplog.records) == 1 and "cores free" in caplog.records[0].getMessage()
    assert torch.get_num_threads() == 2


def test_manifest_records_threads_and_policy(fresh):
    fresh.setattr(threads, "usable_cores", lambda: 2)
    fresh.setattr(threads, "machine_load", lambda: 1.5)
    threads.apply("auto")
    manifest = json.loads(json.dumps(environment_manifest([0], "cpu")))
    assert manifest["torch_threads"] == 1
    record = manifest["threads"]
    assert (record["threads"], record["cores"], record["load"]) == (1, 2, 1.5)
    assert record["requested"] == "auto" and record["policy"]


def test_fit_applies_threads(fresh):
    from forecast.data.windows import WindowDataset, WindowLayout
    from forecast.models.registry import create_model

    layout = WindowLayout(8, 2, ("y",), ())
    data = torch.randn(40, 1)
    ds = WindowDataset(data, torch.arange(30).numpy(), layout, torch.zeros(30).int().numpy())
    torch.set_num_threads(2)
    model = create_model("lstm", layout, epochs=1, progress=False, hidden_size=4, threads=1)
    model.fit(ds)
    assert torch.get_num_threads() == 1 and threads.current().requested == 1


def test_run_threads_accepts_auto_and_counts():
    from forecast.config import ConfigError, load_config

    assert load_config().run.threads == "auto"
    assert load_config(None, ["run.threads=3"]).run.threads == 3
    with pytest.raises(
        ConfigError, match="run.threads must be 'auto' or a positive integer, got 'many'"
    ):
        load_config(None, ["run.threads=many"])
