"""Peak memory of windowing a long series: prints the figure and writes JSON.

    python bench/memory_windowing.py                 # 10 million rows x 8 columns, L = 336
    python bench/memory_windowing.py --rows 1000000  # quicker

Measures peak resident memory (ru_maxrss) above the process's footprint before the raw
array existed, as a multiple of the raw array's size, for: building the windows (split,
scaling on training rows, window index) and one pass of batches over every training
window.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.frame import SeriesFrame  # noqa: E402
from forecast.data.prepare import prepare_data  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--input-length", type=int, default=336)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", default="bench/results/memory_windowing.json")
    args = p.parse_args()
    torch.set_num_threads(2)

    before = peak_mb()
    rng = np.random.default_rng(0)
    values = np.empty((args.rows, args.columns), dtype=np.float32)
    for lo in range(0, args.rows, 1 << 20):  # fill in chunks: no float64 temporary
        hi = min(lo + (1 << 20), args.rows)
        values[lo:hi] = rng.standard_normal((hi - lo, args.columns), dtype=np.float32)
    raw_mb = values.nbytes / 2**20
    frame = SeriesFrame(
        values=values,
        timestamps=np.arange(0, args.rows * 60 * 10**9, 60 * 10**9, dtype="datetime64[ns]"),
        bounds=np.array([0, args.rows]),
        series_ids=[""],
        targets=["y"],
        past_covariates=[f"x{i}" for i in range(args.columns - 1)],
        known_covariates=[],
        calendar_columns=[],
        freq="min",
    )
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
        "window_copy_would_be_mb": round(
            len(data.train) * (args.input_length + args.horizon) * args.columns * 4 / 2**20, 1
        ),
        "one_batch_mb": round(batch_mb, 2),
        "build_seconds": round(build_s, 2),
        "batch_pass_seconds": round(pass_s, 2),
    }
    for key, value in result.items():
        print(f"{key:40s} {value}")
    verdict = "OK" if result["ratio_to_raw"] < 2 else "OVER TARGET"
    print(f"peak / raw array = {result['ratio_to_raw']:.3f} (target < 2): {verdict}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
