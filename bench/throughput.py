"""Shared by the throughput benchmarks (`bench_lstm.py`, `bench_transformer.py`): the
reference data and the timing of one training epoch plus prediction.

The reference setup: random data shaped like ETTh1 track MS (7 input columns: 1 target,
6 past covariates), input 96, horizon 24, batch 32.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.windows import WindowDataset, WindowLayout  # noqa: E402
from forecast.models.torch_base import TorchForecaster  # noqa: E402

L, H, BATCH = 96, 24, 32


def reference_dataset(n_windows: int, seed: int = 0) -> WindowDataset:
    """`n_windows` training windows of the reference setup, from standard normal data."""
    layout = WindowLayout(L, H, ("y",), tuple(f"x{i}" for i in range(6)))
    rows = n_windows + L + H - 1
    data = torch.from_numpy(np.random.default_rng(seed).standard_normal((rows, 7), np.float32))
    return WindowDataset(data, np.arange(n_windows), layout, np.zeros(n_windows, np.int32))


def time_model(model: TorchForecaster, ds: WindowDataset) -> tuple[float, float, float]:
    """Train `model` one epoch on `ds` (no validation) and predict every window in
    batches of 256: (training windows/s by the loop's epoch clock, prediction windows/s,
    training windows per CPU-second of this process)."""
    cpu = time.process_time()
    model.fit(ds)  # no validation: the epoch time is training only
    cpu = time.process_time() - cpu
    train_s = float(model.history_["seconds"].iloc[0])
    start = time.perf_counter()
    for batch in ds.iter_batches(256):
        model.predict_batch(batch)
    return len(ds) / train_s, len(ds) / (time.perf_counter() - start), len(ds) / cpu


def run_rounds(names: list[str], time_one: Callable[[str], tuple], repeats: int) -> dict:
    """Each variant's `repeats` timings, {name: [time_one(name), ...]}, taken in rounds
    (every variant once per round) rather than one variant's runs in a row: a slow spell
    of a shared machine then costs each variant one run, not all of one variant's.

    Args:
        names: the variants, in the order to run them in each round.
        time_one: times one run of a variant.
        repeats: rounds.
    """
    runs: dict[str, list[tuple]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            runs[name].append(time_one(name))
    return runs


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """The command line both benchmarks share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--windows", type=int, default=1600, help="training windows per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    p.add_argument("--out", default=default_out)
    return p
