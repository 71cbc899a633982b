"""Peak memory of windowing a long series: prints the figure and writes JSON.

    python bench/memory_windowing.py                 # 10 million rows x 8 columns, L = 336
    python bench/memory_windowing.py --rows 1000000  # quicker

Measures peak resident memory (ru_maxrss) above the process's footprint before the raw
array existed, as a multiple of the raw array's size, for: building the windows (split,
scaling on training rows, window index), one pass of batches over every training window,
and training the attention LSTM (`lstm`, hidden 64, batch 32) for one epoch of
`--train-windows` windows drawn from all training windows, validated on
`--val-windows` of the validation windows. The issue's target is "at most 2x the raw
data plus the model's". The same training first runs once on tiny shapes before the
baseline is taken, so one-time costs of the libraries (lazy imports, thread pools,
oneDNN kernels, which are not data) are not charged to the data. The model's share is
measured in a child process: after the same warm-up, the peak of the same training
(same L, H, batch sizes, validation batches of 512) on a small series (`--model-rows`),
less that series: weights, gradients, Adam state, the largest batch's activations and
what the allocator keeps of them.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.frame import SeriesFrame  # noqa: E402
from forecast.data.prepare import DataBundle, prepare_data  # noqa: E402
from forecast.models.base import Forecaster  # noqa: E402
from forecast.models.registry import create_model  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_mb() -> float:
    """Resident memory now (Linux). Peaks are measured above it: if the warm-up's peak is
    never exceeded again the figure overstates, never understates, the data's share."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _frame(rows: int, columns: int) -> SeriesFrame:
    """A float32 random series of `rows` x `columns` (1 target, the rest covariates)."""
    rng = np.random.default_rng(0)
    values = np.empty((rows, columns), dtype=np.float32)
    for lo in range(0, rows, 1 << 20):  # fill in chunks: no float64 temporary
        hi = min(lo + (1 << 20), rows)
        values[lo:hi] = rng.standard_normal((hi - lo, columns), dtype=np.float32)
    return SeriesFrame(
        values=values,
        timestamps=np.arange(0, rows * 60 * 10**9, 60 * 10**9, dtype="datetime64[ns]"),
        bounds=np.array([0, rows]),
        series_ids=[""],
        targets=["y"],
        past_covariates=[f"x{i}" for i in range(columns - 1)],
        known_covariates=[],
        calendar_columns=[],
        freq="min",
    )


def _train(data: DataBundle, args: argparse.Namespace) -> Forecaster:
    """One epoch of the attention LSTM on `--train-windows` windows, with validation."""
    model = create_model(
        "lstm",
        data.layout,
        hidden_size=64,
        batch_size=32,
        epochs=1,
        max_train_windows=args.train_windows,
        max_val_windows=args.val_windows,
        progress=False,
        device="cpu",
    )
    return model.fit(data.train, data.val)


def _warm_up(args: argparse.Namespace) -> None:
    """Train once on tiny shapes: the libraries' one-time costs, not counted anywhere."""
    tiny = argparse.Namespace(**{**vars(args), "train_windows": 64, "val_windows": 64})
    _train(prepare_data(_frame(2_000, args.columns), input_length=16, horizon=4), tiny)
    gc.collect()


def _model_footprint(args: argparse.Namespace) -> float:
    """Peak MB of training on the small series, above the footprint after a warm-up on
    tiny shapes (run in a fresh child process, so nothing earlier is counted)."""
    torch.set_num_threads(2)
    _warm_up(args)
    before = current_mb()
    small = _frame(args.model_rows, args.columns)
    _train(prepare_data(small, input_length=args.input_length, horizon=args.horizon), args)
    return peak_mb() - before - small.values.nbytes / 2**20  # the series itself is data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--input-length", type=int, default=336)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-windows", type=int, default=8192, help="0 skips training")
    p.add_argument("--val-windows", type=int, default=2048)
    p.add_argument("--model-rows", type=int, default=20_000)
    p.add_argument("--out", default="bench/results/memory_windowing.json")
    args = p.parse_args()
    torch.set_num_threads(2)

    model_mb = 0.0
    if args.train_windows:
        _warm_up(args)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            model_mb = pool.apply(_model_footprint, (args,))
    before = current_mb()
    frame = _frame(args.rows, args.columns)
    raw_mb = frame.values.nbytes / 2**20
    after_raw = peak_mb()
    t0 = time.perf_counter()
    data = prepare_data(frame, input_length=args.input_length, horizon=args.horizon, copy=False)
    build_s = time.perf_counter() - t0
    after_build = peak_mb()
    t0 = time.perf_counter()
    n = 0
    for batch in data.train.iter_batches(
        args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    ):
        n += len(batch["origin"])
    pass_s = time.perf_counter() - t0
    after_pass = peak_mb()
    t0 = time.perf_counter()
    if args.train_windows:
        _train(data, args)
    train_s = time.perf_counter() - t0
    after_train = peak_mb()
    batch_mb = args.batch_size * (args.input_length + args.horizon) * args.columns * 4 / 2**20
    result = {
        "rows": args.rows,
        "columns": args.columns,
        "input_length": args.input_length,
        "raw_array_mb": round(raw_mb, 1),
        "train_windows": len(data.train),
        "windows_per_pass": n,
        "peak_over_baseline_after_raw_mb": round(after_raw - before, 1),
        "peak_over_baseline_after_windowing_mb": round(after_build - before, 1),
        "peak_over_baseline_after_batch_pass_mb": round(after_pass - before, 1),
        "ratio_to_raw": round((after_pass - before) / raw_mb, 3),
        "train_windows_trained": args.train_windows,
        "model_training_footprint_mb": round(model_mb, 1),
        "peak_over_baseline_after_training_mb": round(after_train - before, 1),
        "training_ratio_to_raw": round((after_train - before) / raw_mb, 3),
        "training_target_mb": round(2 * raw_mb + model_mb, 1),
        "window_copy_would_be_mb": round(
            len(data.train) * (args.input_length + args.horizon) * args.columns * 4 / 2**20, 1
        ),
        "one_batch_mb": round(batch_mb, 2),
        "build_seconds": round(build_s, 2),
        "batch_pass_seconds": round(pass_s, 2),
        "train_seconds": round(train_s, 2),
    }
    for key, value in result.items():
        print(f"{key:40s} {value}")
    verdict = "OK" if result["ratio_to_raw"] < 2 else "OVER TARGET"
    print(f"peak / raw array = {result['ratio_to_raw']:.3f} (target < 2): {verdict}")
    if args.train_windows:
        ok = after_train - before <= 2 * raw_mb + model_mb
        print(
            f"with training: {after_train - before:.0f} MB over baseline, target <= 2 x raw + "
            f"model = {2 * raw_mb + model_mb:.0f} MB: {'OK' if ok else 'OVER TARGET'}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
