"""Time to a test MSE, one-window latency and prediction throughput of the peer LSTMs.

    /work/bench-venv/bin/python bench/peers/peer_mse_latency.py [--quick] [--epochs 10]
        [--target 0.030] [--peers nf_lstm darts_rnn] [--threads 2]
        [--max-test-windows N] [--out bench/results/peer_mse_latency.json]

Data: ETTh1 track U (OT only), L 96, H 24, windowed and scaled by the toolkit's
`ett_bundle(frame, "U", 96, 24)`: training rows [0, 8640), z-score fitted on them, test
windows = every window whose forecast lies in rows [11520, 14400), stride 1 (2,857). The
peers get those exact scaled values: their own scalers are off (neuralforecast
`scaler_type="identity"`; darts scales nothing unless asked), and each test window is
handed to them as its own 96-row input (one `unique_id` per window for neuralforecast,
one `TimeSeries` per window for darts), so theirs and ours forecast the same windows.
MSE is in the scaled space, over every window and step, as the toolkit's test loss.

Models (bench/peers/peer_throughput.py's reference setup, track U): neuralforecast `LSTM`
(1-layer encoder, hidden 64, MLP decoder 64, direct), darts `RNNModel(LSTM)` (1 layer,
hidden 64, training_length L + H, teacher-forced; it forecasts 24 steps
autoregressively), batch 32, Adam lr 1e-3 (both libraries' defaults), MSE loss, CPU.

Epochs: one run of N epochs per library (no restarts, the optimiser's state carries on).
An epoch is ceil(8521 / 32) = 267 optimiser steps of 32 windows: darts' epoch over its
8,521 training sequences; neuralforecast samples 32 windows per step from its one
series, so its "epoch" is 267 steps. A Lightning callback copies the weights after every
267 steps; the training clock (Lightning's `on_train_start` onwards) is paused while it
copies, and the test MSE of every copy is computed after training, by the library's own
`predict`. So the cumulative training seconds exclude every test evaluation.

Latency: the median of `--latency-runs` one-window `predict` calls after 3 warm-up calls.
Throughput: every test window in one `predict` call (batch 1024, as the toolkit's
`predict_dataset`), median of `--throughput-runs`; the input frame / list of series is
built before the clock starts. Needs the benchmark venv (bench/peers/setup.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "peers"))
import forecast  # noqa: E402, F401, I001  (OpenMP's wait policy, as ours, before torch loads)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import peer_throughput as pt  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402

PREDICT_BATCH = 1024  # windows per predict batch (the toolkit's predict_dataset default)
PEERS = ("nf_lstm", "darts_rnn")
# (quick, full)
SIZES = {"epochs": (4, 10), "latency_runs": (20, 50), "throughput_runs": (2, 3)}


@dataclass
class Task:
    """The scaled data every model sees.

    Args:
        train: `date`, `OT`: the training rows [0, 8640), z-scored.
        inputs: [N, L] input of every test window.
        targets: [N, H] what each test window forecasts.
        input_dates: [N, L] timestamps of the inputs.
    """

    train: pd.DataFrame
    inputs: np.ndarray
    targets: np.ndarray
    input_dates: np.ndarray


def load_task(path: Path, L: int, H: int, max_test: int | None) -> Task:
    """ETTh1 U windowed by the toolkit's protocol; the first `max_test` test windows only
    when given (smoke runs)."""
    bundle = ett_bundle(pd.read_csv(path), "U", L, H)
    values = bundle.frame.values[:, 0].astype(np.float32)
    stamps = pd.DatetimeIndex(bundle.frame.timestamps)
    train_end = bundle.borders[0][0]
    test = bundle.test
    starts = np.asarray(test.starts)[:max_test]
    rows = starts[:, None] + np.arange(L + H)
    batch = test.batch(np.arange(len(starts)))  # the toolkit's own view of the windows
    if not np.array_equal(values[rows[:, :L]], batch["past_target"][..., 0].numpy()):
        raise RuntimeError("test inputs differ from the toolkit's windows")
    train = pd.DataFrame({"date": stamps[:train_end], "OT": values[:train_end]})
    return Task(train, values[rows[:, :L]], values[rows[:, L:]], stamps.values[rows[:, :L]])


def tag() -> str:
    """Threads, OpenMP policy and load, printed beside every figure."""
    policy = pt.openmp()["policy"]
    return f"[threads={torch.get_num_threads()}, OpenMP {policy}, load {os.getloadavg()[0]:.2f}]"


# Filled by the callback (module level: neuralforecast deep-copies models and callbacks).
_TRACE: dict[str, Any] = {}


def snapshot_callback(every: int) -> Any:
    """A Lightning callback copying the weights every `every` training steps, with the
    training seconds so far (its own copying excluded) into `_TRACE`."""
    import pytorch_lightning as pl

    _TRACE.clear()
    _TRACE.update(start=math.nan, paused=0.0, batches=0, seconds=[], states=[])

    class Snapshots(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            _TRACE["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            _TRACE["batches"] += 1
            if _TRACE["batches"] % every:
                return
            now = time.perf_counter()
            _TRACE["seconds"].append(now - _TRACE["start"] - _TRACE["paused"])
            _TRACE["states"].append(copy.deepcopy(pl_module.state_dict()))
            _TRACE["paused"] += time.perf_counter() - now

    return Snapshots()


@dataclass
class Peer:
    """A trained peer: how to predict many windows and one, how to load a snapshot."""

    predict_all: Callable[[], np.ndarray]  # [N, H]
    predict_one: Callable[[], np.ndarray]
    load: Callable[[dict[str, Any]], None]
    config: dict[str, Any]
    model: Any  # the library's object (NeuralForecast, RNNModel)


def nf_lstm(task: Task, setup: pt.Setup, epochs: int, steps: int) -> Peer:
    """neuralforecast LSTM trained `epochs` x `steps` steps; predicts with `nf.predict`
    on a long frame holding one `unique_id` per test window."""
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import LSTM

    cfg = {"encoder_n_layers": 1, "encoder_hidden_size": setup.hidden,
           "decoder_hidden_size": setup.hidden}  # fmt: skip
    model = LSTM(
        h=setup.horizon,
        input_size=setup.input_length,
        loss=MSE(),
        max_steps=epochs * steps,
        batch_size=1,  # series per step; there is one
        windows_batch_size=setup.batch_size,
        valid_batch_size=PREDICT_BATCH,  # series (= test windows) per predict batch
        scaler_type="identity",  # the data is already z-scored
        random_seed=setup.seed + 1,  # neuralforecast rejects seed 0 in places
        val_check_steps=10 * epochs * steps,
        **cfg,
        **pt._trainer_kwargs(snapshot_callback(steps)),
    )
    nf = NeuralForecast(models=[model], freq="h")
    train = task.train.rename(columns={"date": "ds", "OT": "y"}).assign(unique_id="ETTh1")
    nf.fit(train[["unique_id", "ds", "y"]], val_size=0)
    n, L = task.inputs.shape
    ids = np.repeat([f"w{i:05d}" for i in range(n)], L)
    frame = pd.DataFrame(
        {"unique_id": ids, "ds": task.input_dates.ravel(), "y": task.inputs.ravel()}
    )
    one = frame.iloc[:L]

    def predict(df: pd.DataFrame) -> np.ndarray:
        out = nf.predict(df=df)
        out = out.reset_index() if "unique_id" not in out.columns else out
        out = out.sort_values(["unique_id", "ds"])
        return out["LSTM"].to_numpy(np.float32).reshape(-1, setup.horizon)

    fitted = nf.models[0]
    return Peer(
        predict_all=lambda: predict(frame),
        predict_one=lambda: predict(one),
        load=fitted.load_state_dict,
        config=cfg,
        model=nf,
    )


def darts_rnn(task: Task, setup: pt.Setup, epochs: int, steps: int) -> Peer:
    """darts RNNModel(LSTM) trained `epochs` epochs; predicts with
    `model.predict(n=H, series=[one TimeSeries per test window])`."""
    from darts import TimeSeries
    from darts.models import RNNModel

    cfg = pt.darts_rnn_config(setup)
    model = RNNModel(
        **cfg,
        batch_size=setup.batch_size,
        n_epochs=epochs,
        random_state=setup.seed,
        save_checkpoints=False,
        pl_trainer_kwargs=pt._trainer_kwargs(snapshot_callback(steps)),
    )
    model.fit(pt._darts_series(task.train, ["OT"]), verbose=False)
    series = [
        TimeSeries.from_times_and_values(pd.DatetimeIndex(d), v[:, None].astype(np.float32))
        for d, v in zip(task.input_dates, task.inputs, strict=True)
    ]

    def predict(inputs: list[Any]) -> np.ndarray:
        out = model.predict(n=setup.horizon, series=inputs, batch_size=PREDICT_BATCH, verbose=False)
        return np.stack([s.values()[:, 0] for s in out]).astype(np.float32)

    return Peer(
        predict_all=lambda: predict(series),
        predict_one=lambda: predict(series[:1]),
        load=model.model.load_state_dict,
        config=cfg,
        model=model,
    )


BUILDERS = {"nf_lstm": nf_lstm, "darts_rnn": darts_rnn}
LABELS = {"nf_lstm": "neuralforecast LSTM", "darts_rnn": "darts RNNModel(LSTM)"}


def median_seconds(call: Callable[[], Any], runs: int, warmup: int) -> float:
    """Median wall seconds of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_peer(name: str, task: Task, setup: pt.Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Train peer `name`, trace its test MSE per epoch, time its predictions; print and
    return the figures."""
    label = LABELS[name]
    steps = math.ceil(pt.n_train_windows(setup) / setup.batch_size)
    torch.set_num_threads(setup.threads)
    torch.manual_seed(setup.seed)
    load_before = os.getloadavg()[0]
    peer = BUILDERS[name](task, setup, args.epochs, steps)
    if _TRACE["batches"] != args.epochs * steps:
        raise RuntimeError(f"{name} ran {_TRACE['batches']} steps, not {args.epochs * steps}")
    seconds, states = list(_TRACE["seconds"]), list(_TRACE["states"])
    trace = []
    for epoch, (sec, state) in enumerate(zip(seconds, states, strict=True), start=1):
        peer.load(state)
        mse = float(np.mean((peer.predict_all() - task.targets) ** 2))
        trace.append({"epoch": epoch, "test_mse": mse, "train_seconds": sec})
        print(f"  {label} epoch {epoch}: test mse {mse:.4f}, {sec:.1f} s of training so far",
              flush=True)  # fmt: skip
    hit = next((t for t in trace if t["test_mse"] <= args.target), None)
    if hit:
        seconds = hit["train_seconds"]
        print(f"{label}: test MSE <= {args.target} after epoch {hit['epoch']}, "
              f"{seconds:.1f} s of training (test evaluation excluded) {tag()}")  # fmt: skip
    else:
        best = min(t["test_mse"] for t in trace)
        print(f"{label}: test MSE NOT <= {args.target} in {args.epochs} epochs "
              f"(best {best:.4f}) {tag()}")  # fmt: skip
    one = median_seconds(peer.predict_one, args.latency_runs, warmup=3)
    every = median_seconds(peer.predict_all, args.throughput_runs, warmup=0)
    n = len(task.inputs)
    print(f"{label}: one window {1000 * one:.2f} ms, every test window ({n}) "
          f"{n / every:.0f} windows/s (predict batch {PREDICT_BATCH}) {tag()}",
          flush=True)  # fmt: skip
    return {
        "name": name,
        "label": label,
        "version": pt.versions()[label.split()[0]],
        "config": peer.config,
        "steps_per_epoch": steps,
        "trace": trace,
        "first_epoch_at_target": hit["epoch"] if hit else None,
        "train_seconds_at_target": hit["train_seconds"] if hit else None,
        "one_window_ms": 1000 * one,
        "test_windows": n,
        "windows_per_s": n / every,
        "threads": torch.get_num_threads(),
        "load": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", type=Path, default=pt.DEFAULT_DATA)
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--quick", action="store_true", help="fewer epochs and timing runs")
    p.add_argument("--epochs", type=int, default=None, help="default 10 (--quick: 4)")
    p.add_argument("--target", type=float, default=0.030, help="the test MSE to reach")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-runs", type=int, default=None, help="default 50 (--quick: 20)")
    p.add_argument("--throughput-runs", type=int, default=None, help="default 3 (--quick: 2)")
    p.add_argument("--max-test-windows", type=int, default=None, help="smoke runs: first N")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "peer_mse_latency.json")
    args = p.parse_args()
    i = 0 if args.quick else 1
    for key in SIZES:
        if getattr(args, key) is None:
            setattr(args, key, SIZES[key][i])
    pt.quiet()
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)  # "Seed set to ..."
    torch.set_num_threads(args.threads)
    setup = pt.Setup(data_path=args.data_path, threads=args.threads, seed=args.seed)
    task = load_task(setup.data_path, setup.input_length, setup.horizon, args.max_test_windows)
    print(f"peers (ETTh1 U, L {setup.input_length}, H {setup.horizon}, hidden {setup.hidden}, "
          f"batch {setup.batch_size}, {args.epochs} epochs, {len(task.inputs)} test windows) "
          f"{tag()}", flush=True)  # fmt: skip
    results = [run_peer(name, task, setup, args) for name in args.peers]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "setup": {
            "data_path": str(setup.data_path),
            "track": "U",
            "L": setup.input_length,
            "H": setup.horizon,
            "hidden": setup.hidden,
            "batch_size": setup.batch_size,
            "epochs": args.epochs,
            "target": args.target,
            "seed": args.seed,
            "test_windows": len(task.inputs),
            "predict_batch": PREDICT_BATCH,
            "latency_runs": args.latency_runs,
            "throughput_runs": args.throughput_runs,
        },
        "versions": pt.versions(),
        "nproc": os.cpu_count(),
        "openmp": pt.openmp(),
        "peers": results,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
