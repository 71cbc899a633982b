"""Inference latency of every neural model, batch 1 and batch 256, on CPU.

    python bench/inference_latency.py [--models lstm_luong transformer] [--track MS]
        [--input-length 96] [--horizon 24] [--threads 2] [--out FILE.json]

ETTh1 test windows of the protocol (track MS by default: 7 input columns, OT out), the
reference sizes (hidden / d_model 64). Latency does not depend on the weights, so each
model is fitted for one epoch on 64 windows only (to get a network through the public
API), then `predict_batch` (eval mode, no gradients, free-running decoder, attention
maps included: what a user calls) is timed: median of `--runs` calls after 3 warm-up
calls, for the first window (batch 1) and the first 256 windows (batch 256), in wall
and in process-CPU milliseconds. The 1-minute load average is recorded beside each model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.data.windows import Batch  # noqa: E402
from forecast.models.base import Forecaster  # noqa: E402
from forecast.models.registry import list_models  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"


def time_calls(
    model: Forecaster, batch: Batch, runs: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of `runs` calls of `model.predict_batch(batch)` after
    `warmup` calls. CPU seconds count every thread; they move much less with the load of
    other processes than wall seconds do (with 1 thread they estimate an idle core's wall)."""
    for _ in range(warmup):
        model.predict_batch(batch)
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        model.predict_batch(batch)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return wall, cpu


def measure(name: str, data: Any, hidden: int, runs: int) -> dict[str, Any]:
    """Latency of model `name` at batch 1 and batch 256 (ms, median and p90)."""
    width = "d_model" if name.startswith("transformer") else "hidden_size"
    model = create_model(
        name,
        data.layout,
        **{width: hidden, "epochs": 1, "patience": None, "progress": False, "device": "cpu"},
    )
    model.fit(data.train.subset(np.arange(64)), None)
    row: dict[str, Any] = {"model": name, "load": round(os.getloadavg()[0], 2)}
    for size in (1, 256):
        batch = data.test.batch(np.arange(size))
        seconds, cpu = time_calls(model, batch, runs if size == 1 else max(3, runs // 5))
        median = statistics.median(seconds)
        row[f"b{size}_ms"] = round(1000 * median, 2)
        row[f"b{size}_p90_ms"] = round(1000 * float(np.percentile(seconds, 90)), 2)
        row[f"b{size}_cpu_ms"] = round(1000 * statistics.median(cpu), 2)
        row[f"b{size}_windows_per_s"] = round(size / median)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", nargs="+", default=None, help="default: every neural model")
    p.add_argument("--track", default="MS", choices=["U", "MS", "M"])
    p.add_argument("--input-length", type=int, default=96)
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=50, help="timed calls at batch 1 (batch 256: 1/5)")
    p.add_argument("--out", type=Path, default=Path("bench/results/inference_latency.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models or list_models("neural")
    data = ett_bundle(pd.read_csv(args.data_path), args.track, args.input_length, args.horizon)
    rows = []
    for name in models:
        rows.append(measure(name, data, args.hidden, args.runs))
        print(
            f"{name}: batch 1 {rows[-1]['b1_ms']} ms, batch 256 {rows[-1]['b256_ms']} ms "
            f"(load {rows[-1]['load']})",
            file=sys.stderr,
            flush=True,
        )
    setup = {
        "track": args.track,
        "input_length": args.input_length,
        "horizon": args.horizon,
        "hidden": args.hidden,
        "threads": args.threads,
        "runs": args.runs,
        "torch": torch.__version__,
        "nproc": os.cpu_count(),
    }
    print(f"setup: {setup}")
    print(pd.DataFrame(rows).to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"setup": setup, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
