"""Many-series benchmark: one global model over a long-format panel, windowing memory
against the raw array and training throughput next to a single series.

    python bench/panel.py                        # 20,000 series x 200 rows, lstm and dlinear
    python bench/panel.py --series 2000          # quicker

The panel comes from the toolkit's generator (`make_panel_dataset`: every series its own
covariate paths, noise and level), long format (`series_id`, `date`, target, covariates),
and goes through the usual path: `prepare_frame` (validation, one float32 array of every
series' rows), then `prepare_data` (split per series, per-series scaling on training
rows, windows of every part). Windowing memory is what `prepare_data` on that frame
(scaling in place, `copy=False`) and one pass of batches over every training window
allocate at their peak (numpy allocations, traced with `tracemalloc`; torch's are views
or per-batch, and the script checks that the windows share the raw array), as a multiple
of the raw float32 array: (raw + peak) / raw, target < 2.

A shuffled pass over every training window adds the epoch's permutation (one int32 per
training window, torch) to the index the windows hold: `batch_pass_ratio_to_raw`.

Throughput: each model trains `--steps` optimiser steps of `--batch-size` windows drawn
at random from all the panel's training windows (one epoch over them, no validation: the
loop's epoch clock), then the same model on as many windows of one long single series
with the same columns, L and H. Threads and the OpenMP wait policy are printed and
stored in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.frame import ColumnRoles, SeriesFrame, prepare_frame  # noqa: E402
from forecast.data.prepare import PARTS, DataBundle, prepare_data  # noqa: E402
from forecast.data.synthetic import make_driver_dataset, make_panel_dataset  # noqa: E402
from forecast.data.windows import WindowDataset, permutation  # noqa: E402
from forecast.models.registry import create_model  # noqa: E402

MODEL_PARAMS = {
    "lstm": {"hidden_size": 32, "attention_warmup": 0},  # the LSTMs run from the first step
    "dlinear": {},
}


def _roles(covariates: list[str]) -> ColumnRoles:
    return ColumnRoles(("target",), tuple(covariates), calendar=False, series_id="series_id")


def _windowing_memory(frame: SeriesFrame, args: argparse.Namespace) -> tuple[DataBundle, dict]:
    """Prepare the windows of `frame` (in place) and pass over every training window once,
    under `tracemalloc`; the figures."""
    raw = frame.values.nbytes
    tracemalloc.start()
    t0 = time.perf_counter()
    data = prepare_data(frame, input_length=args.input_length, horizon=args.horizon, copy=False)
    build_s = time.perf_counter() - t0
    _, build_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    seen = 0
    gen = torch.Generator().manual_seed(0)
    for batch in data.train.iter_batches(256, shuffle=True, generator=gen):
        seen += len(batch["origin"])
    pass_s = time.perf_counter() - t0
    _, pass_peak = tracemalloc.get_traced_memory()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    parts = [data.part(p) for p in PARTS if data.part(p) is not None]
    index = sum(ds.index_bytes() for ds in parts)
    # The shuffle of an epoch: one int32 per training window (torch, not traced above).
    shuffle = permutation(len(data.train)).element_size() * len(data.train)
    span = args.input_length + args.horizon
    copies = sum(len(ds) for ds in parts) * span * frame.values.shape[1] * 4
    return data, {
        "raw_array_mb": round(raw / 2**20, 1),
        "raw_array_shape": list(frame.values.shape),
        "windows": {p: len(data.part(p)) if data.part(p) is not None else 0 for p in PARTS},
        "windows_share_raw_array": all(
            ds.data.data_ptr() == frame.values.ctypes.data for ds in parts
        ),
        "window_index_mb": round(index / 2**20, 3),
        "held_after_windowing_mb": round(held / 2**20, 2),
        "peak_windowing_mb": round(build_peak / 2**20, 2),
        "ratio_to_raw": round((raw + build_peak) / raw, 3),
        "peak_batch_pass_numpy_mb": round(pass_peak / 2**20, 2),
        "shuffle_permutation_mb": round(shuffle / 2**20, 2),
        "batch_pass_ratio_to_raw": round((raw + index + pass_peak + shuffle) / raw, 3),
        "materialised_windows_would_be_mb": round(copies / 2**20, 1),
        "windows_per_pass": seen,
        "build_seconds": round(build_s, 2),
        "batch_pass_seconds": round(pass_s, 2),
    }


def _throughput(name: str, ds: WindowDataset, args: argparse.Namespace) -> float:
    """Training windows/s of `name` over `--steps` steps of `--batch-size` windows drawn at
    random from `ds` (one epoch over them, no validation: the loop's epoch clock)."""
    n = min(args.steps * args.batch_size, len(ds))
    pick = np.sort(np.random.default_rng(0).choice(len(ds), n, replace=False))
    params = {**MODEL_PARAMS.get(name, {}), "epochs": 1, "batch_size": args.batch_size}
    model = create_model(name, ds.layout, **params, progress=False, device="cpu", seed=0)
    model.fit(ds.subset(pick))
    return n / float(model.history_["seconds"].iloc[0])


def _single_series(args: argparse.Namespace) -> WindowDataset:
    """One series with the panel's columns and enough training windows for the steps."""
    rows = int((args.steps * args.batch_size + args.input_length + args.horizon) / 0.7) + 1
    syn = make_driver_dataset(rows, seed=0, n_covariates=args.covariates)
    frame = syn.frame.rename(columns={syn.target: "target"})
    covariates = () if args.target_only else tuple(syn.covariates)
    roles = ColumnRoles(("target",), covariates, calendar=False)
    return prepare_data(frame, roles, input_length=args.input_length, horizon=args.horizon).train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--series", type=int, default=20_000)
    p.add_argument("--rows", type=int, default=200, help="rows per series")
    p.add_argument("--covariates", type=int, default=4)
    p.add_argument("--target-only", action="store_true", help="window the target alone (1 column)")
    p.add_argument("--input-length", type=int, default=48)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per model")
    p.add_argument("--models", nargs="+", default=["lstm", "dlinear"])
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/panel.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = {
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)"),
        "load_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }
    print("threads and OpenMP policy:", env)

    t0 = time.perf_counter()
    long, _ = make_panel_dataset(args.series, args.rows, seed=0, n_covariates=args.covariates)
    generate_s = time.perf_counter() - t0
    covariates = [c for c in long.columns if c not in ("series_id", "date", "target")]
    if args.target_only:
        long, covariates = long[["series_id", "date", "target"]], []
    t0 = time.perf_counter()
    frame = prepare_frame(long, _roles(covariates))
    frame_s = time.perf_counter() - t0
    del long
    data, memory = _windowing_memory(frame, args)
    print(
        f"panel: {args.series} series x {args.rows} rows x {frame.values.shape[1]} columns "
        f"(generated in {generate_s:.1f}s, validated in {frame_s:.1f}s)"
    )
    for key, value in memory.items():
        print(f"  {key:36s} {value}")
    for what, key in (
        ("windowing", "ratio_to_raw"),
        ("a shuffled pass", "batch_pass_ratio_to_raw"),
    ):
        verdict = "OK" if memory[key] < 2 else "OVER TARGET"
        print(f"{what}: {memory[key]:.3f} x the raw array (target < 2): {verdict}")

    single = _single_series(args)
    speed = {}
    for name in args.models:
        # Warm-up: one-time costs (lazy imports, oneDNN kernels) charged to neither figure.
        _throughput(name, single, argparse.Namespace(**{**vars(args), "steps": 3}))
        rounds = [  # interleaved: a slow spell of the machine costs both alike
            (_throughput(name, data.train, args), _throughput(name, single, args))
            for _ in range(args.repeats)
        ]
        panel_wps, single_wps = np.median(rounds, axis=0)
        speed[name] = {
            "panel_windows_per_s": round(panel_wps),
            "single_series_windows_per_s": round(single_wps),
            "panel_over_single": round(panel_wps / single_wps, 3),
            "rounds": [[round(a), round(b)] for a, b in rounds],
        }
        print(
            f"{name:8s} training: panel {panel_wps:,.0f} windows/s, single series "
            f"{single_wps:,.0f} windows/s ({panel_wps / single_wps:.2f}x; median of "
            f"{args.repeats} interleaved rounds of {args.steps} steps of {args.batch_size})"
        )
    result = {
        "command": "python bench/panel.py " + " ".join(sys.argv[1:]),
        "series": args.series,
        "rows_per_series": args.rows,
        "input_length": args.input_length,
        "horizon": args.horizon,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "environment": env,
        "generate_seconds": round(generate_s, 1),
        "prepare_frame_seconds": round(frame_s, 1),
        "memory": memory,
        "throughput": speed,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
