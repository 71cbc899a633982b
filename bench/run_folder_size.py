"""Size of a run folder and the share of wall time spent writing it.

    python bench/run_folder_size.py                       # generated ETTm1-sized frame
    python bench/run_folder_size.py --predictions csv     # the full tidy CSV as well
    python bench/run_folder_size.py --data-path my.csv --targets a b
    python bench/run_folder_size.py --json bench/results/run_folder_size.json

A baselines-only run (every baseline is always added to `--models`) on a frame the size
of ETTm1: 69,680 rows at 15 minutes, 7 columns, every column a target (track M), input
length 336, horizon 96, the ETT-minute split (11,425 test windows). Prints the run
folder's total bytes (and the largest files), the run's wall time, and the time spent
writing: inside `atomic_write` (serialising and saving every file) plus building the
arrays and frames that are only written (`prediction_arrays`, `predictions_frame`).
The issue's targets: under 50 MB, under 20 % of the wall time. Writes JSON with
`--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import forecast.report as report  # noqa: E402
import forecast.runner as runner  # noqa: E402
import forecast.runs as runs  # noqa: E402
from forecast.config import DataConfig, ExperimentConfig, RunConfig  # noqa: E402
from forecast.experiment import run  # noqa: E402

COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """An ETT-like frame: daily and weekly cycles plus random walks, 15-minute steps."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    out = {"date": pd.date_range("2016-07-01", periods=rows, freq="15min")}
    for i, name in enumerate(COLUMNS):
        day = np.sin(2 * np.pi * t / 96 + i)
        week = 0.5 * np.sin(2 * np.pi * t / 672 + 2 * i)
        walk = np.cumsum(rng.normal(scale=0.05, size=rows))
        out[name] = (10 + 3 * day + week + walk + rng.normal(scale=0.3, size=rows)).round(3)
    return pd.DataFrame(out)


class WriteClock:
    """Wall time spent inside wrapped functions, nested calls counted once."""

    def __init__(self) -> None:
        self.seconds, self.depth = 0.0, 0

    def wrap(self, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - t0

        return timed


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-path", help="a CSV (default: a generated ETTm1-sized frame)")
    p.add_argument("--targets", nargs="+", default=COLUMNS)
    p.add_argument("--rows", type=int, default=69_680)
    p.add_argument("--models", nargs="+", default=["naive", "nlinear"])
    p.add_argument("--predictions", default="npz", choices=["npz", "csv", "none"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data_path
        if path is None:
            path = str(Path(tmp) / "ettm1_like.csv")
            make_frame(args.rows).to_csv(path, index=False)
        cfg = ExperimentConfig(
            models=list(args.models),
            data=DataConfig(
                dataset="csv",
                data_path=path,
                targets=list(args.targets),
                covariates="none",
                input_length=336,
                horizon=96,
                split="ett_minute",
            ),
            run=RunConfig(
                output_dir=str(Path(tmp) / "runs"),
                name="bench",
                progress=False,
                threads=args.threads,
                plots=not args.no_plots,
                predictions=args.predictions,
            ),
        )
        clock = WriteClock()
        runs.atomic_write = clock.wrap(runs.atomic_write)
        report.atomic_write = runs.atomic_write
        runner.prediction_arrays = clock.wrap(runner.prediction_arrays)
        runner.predictions_frame = clock.wrap(runner.predictions_frame)
        t0 = time.perf_counter()
        result = run(cfg)
        wall = time.perf_counter() - t0
        files = sorted(
            ((f.stat().st_size, f.relative_to(result.run_dir).as_posix())
             for f in result.run_dir.rglob("*") if f.is_file()),
            reverse=True,
        )  # fmt: skip
    total = sum(size for size, _ in files)
    out = {
        "rows": args.rows if args.data_path is None else None,
        "data": args.data_path or "generated",
        "targets": len(args.targets),
        "test_windows": len(result.bundle.test),
        "models": list(result.leaderboard["model"]),
        "predictions": args.predictions,
        "plots": not args.no_plots,
        "threads": args.threads,
        "fit_seconds": float(result.per_seed["fit_seconds"].sum()),
        "wall_seconds": round(wall, 2),
        "write_seconds": round(clock.seconds, 2),
        "write_share": round(clock.seconds / wall, 3),
        "total_bytes": total,
        "files": len(files),
        "largest": [{"bytes": s, "file": f} for s, f in files[:8]],
    }
    print(json.dumps(out, indent=2))
    print(
        f"run folder {total / 1e6:.1f} MB in {len(files)} files; wall {wall:.1f} s, writing "
        f"{clock.seconds:.1f} s ({100 * clock.seconds / wall:.0f} %), fitting "
        f"{out['fit_seconds']:.1f} s; {out['test_windows']} test windows, threads {args.threads}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
