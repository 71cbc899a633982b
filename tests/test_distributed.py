"""Data-parallel training (`forecast.distributed`): two gloo ranks on the loopback
interface, started with `torch.multiprocessing.spawn`, train like one process."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from forecast import distributed
from forecast.data.frame import ColumnRoles
from forecast.data.prepare import prepare_data
from forecast.data.synthetic import make_driver_dataset
from forecast.data.windows import WindowDataset
from forecast.models.registry import create_model

BATCH = 8  # the global batch: 4 windows per rank on 2 ranks
PARAMS = {
    "hidden_size": 8,
    "epochs": 3,
    "attention_warmup": 1,  # the lag-prior phase (LSTMs unused), then content attention
    "batch_size": BATCH,
    "teacher_forcing": 0.0,
    "dropout": 0.0,
    "progress": False,
    "device": "cpu",
    "seed": 3,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _double(ds: WindowDataset) -> WindowDataset:
    """The same windows over a float64 copy of the data (exact comparisons)."""
    return WindowDataset(ds.data.double(), ds.starts, ds.layout, ds.series_index)


def _data() -> tuple[WindowDataset, WindowDataset]:
    """Training windows (not a multiple of the batch: a partial last batch) and
    validation windows, float64."""
    syn = make_driver_dataset(140, seed=1, n_covariates=2)
    roles = ColumnRoles((syn.target,), syn.covariates)
    bundle = prepare_data(syn.frame, roles, input_length=12, horizon=4)
    return _double(bundle.train), _double(bundle.val)


def _fit(batch_size: int) -> tuple[list, dict]:
    """Train `lstm` in float64 on one thread: (loss history, weights)."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    try:
        train, val = _data()
        assert len(train) % BATCH != 0
        model = create_model("lstm", train.layout, **{**PARAMS, "batch_size": batch_size})
        model.fit(train, val)
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    cols = ["train_loss", "val_loss"]
    return model.history_[cols].to_numpy().tolist(), model.state_dict()


def _join(r: int, world: int, port: int, timeout_s: float) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(
        "gloo", rank=r, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
    )


def _train_rank(r: int, world: int, port: int, out: str) -> None:
    _join(r, world, port, 60)
    try:
        history, state = _fit(BATCH)  # the global batch: `train_batches` shares it
        if distributed.is_main():
            torch.save({"history": history, "state": state}, out)
    finally:
        distributed.shutdown()


def _recording_rank(r: int, world: int, port: int, out: str) -> None:
    """Train with dropout and teacher forcing (each rank its own draws) and store the
    origins of the windows this rank trained on, per epoch, and the final weights."""
    _join(r, world, port, 60)
    seen: list[list[int]] = []
    plain = distributed.train_batches

    def recording(ds, batch_size, generator):
        seen.append([])
        for batch, weight, n in plain(ds, batch_size, generator):
            seen[-1] += batch["origin"][:n].tolist()
            yield batch, weight, n

    distributed.train_batches = recording
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # this process's own default
    try:
        train, val = _data()
        params = {**PARAMS, "epochs": 2, "dropout": 0.2, "teacher_forcing": 0.5}
        model = create_model("lstm", train.layout, **params, decoding="autoregressive")
        model.fit(train, val)
        torch.save({"seen": seen, "state": model.state_dict()}, f"{out}.{r}")
    finally:
        distributed.shutdown()


def _failing_rank(r: int, world: int, port: int, hang: bool) -> None:
    """Rank 1 fails in its first training step: it raises, or (`hang`) stops answering,
    so rank 0 waits in a collective until the process group's timeout."""
    _join(r, world, port, 5)
    if r == 1:
        from forecast.models import lstm

        def broken(*args, **kwargs):
            if hang:
                time.sleep(600)
            raise RuntimeError("rank 1 fails on purpose")

        lstm.LSTMNetwork.forward = broken
    try:
        _fit(BATCH)
    finally:
        distributed.shutdown()


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 8, 17, 32])
def test_every_window_once_per_epoch(world: int, n: int) -> None:
    batch = 8
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).numpy()
    per_rank = [list(distributed.rank_shares(order, batch, world, r)) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes part in every step
    seen = np.concatenate([s for p in per_rank for s, _ in p])
    assert sorted(seen.tolist()) == list(range(n))
    for step in zip(*per_rank):
        assert sum(len(s) for s, _ in step) == step[0][1] <= batch
        assert max(len(s) for s, _ in step) - min(len(s) for s, _ in step) <= 1
    # Rank by rank, the global batches are the permutation's consecutive slices.
    flat = [np.concatenate([s for s, _ in step]) for step in zip(*per_rank)]
    assert np.concatenate(flat).tolist() == order.tolist()


def test_single_process_needs_no_process_group() -> None:
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.sum_over_ranks(2.0, 3.0) == (2.0, 3.0)


def test_two_ranks_train_like_one_process(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(_train_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    history, state = _fit(BATCH)
    assert len(ddp["history"]) == len(history) == PARAMS["epochs"]
    np.testing.assert_allclose(ddp["history"], history, rtol=0, atol=1e-5)
    assert state.keys() == ddp["state"].keys()
    for key, value in state.items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=0, atol=1e-5, msg=key)


@pytest.mark.slow  # ~20 s; the sampler's own test runs by default
def test_with_dropout_and_teacher_forcing_every_window_once_per_epoch(tmp_path: Path) -> None:
    """Ranks draw their own dropout masks and coins (so the shuffling generators would
    drift apart without the sync after each epoch); each epoch still covers every
    training window exactly once over the ranks, and the ranks end with equal weights."""
    out = str(tmp_path / "seen")
    mp.spawn(_recording_rank, args=(2, _free_port(), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    origins = sorted(_data()[0].origin_rows().tolist())
    for epoch in range(2):
        assert sorted(ranks[0]["seen"][epoch] + ranks[1]["seen"][epoch]) == origins
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("hang", [False, True], ids=["raises", "hangs"])
def test_a_failing_rank_stops_the_job(hang: bool) -> None:
    start = time.perf_counter()
    with pytest.raises(mp.ProcessRaisedException) as err:
        mp.spawn(_failing_rank, args=(2, _free_port(), hang), nprocs=2, join=True)
    elapsed = time.perf_counter() - start
    if hang:  # rank 0's collective times out after the group's 5 s
        assert "Timed out" in str(err.value) or "timeout" in str(err.value).lower()
        assert elapsed >= 5
    else:
        assert "rank 1 fails on purpose" in str(err.value)
    assert elapsed < 60


def _torchrun(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp / "scratch"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    script = Path(__file__).resolve().parents[1] / "run_experiment.py"
    return subprocess.run(
        [*cmd, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_run_experiment_under_torchrun_writes_one_run_folder_and_resumes(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    runs = tmp_path / "runs"
    common = ["--no-progress", "--set", "run.interpret=false"]
    done = _torchrun(
        "--models", "lstm", "--synthetic-rows", "1200", "--seeds", "0",
        "--set", "train.epochs=2", "--set", f"run.output_dir={runs}", *common, tmp=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = runs.iterdir()  # rank 1 wrote nothing here
    assert (run_dir / "results/lstm/seed0.json").is_file()
    assert (run_dir / "history/lstm_seed0.csv").is_file()
    assert not list((tmp_path / "scratch").glob("rank1-*"))  # rank 1 removed its scratch folder
    for ext in ("json", "npz"):  # as if interrupted before the lstm finished
        (run_dir / f"results/lstm/seed0.{ext}").unlink()
    again = _torchrun("--resume", str(run_dir), "--no-progress", tmp=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "naive seed 0: reusing" in again.stderr
    assert "lstm seed 0: reusing" not in again.stderr
    assert (run_dir / "results/lstm/seed0.json").is_file()
    assert list(runs.iterdir()) == [run_dir]
