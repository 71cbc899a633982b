"""Coverage of calibrated intervals on ETTh1 track U (OT in, OT out), input 96, horizon 24.

    python bench/interval_coverage.py [--data-path ../shared/data/ETTh1.csv] [--threads 1]
        [--epochs 8] [--out bench/results/interval_coverage.json]

For `naive`, `linear` and `lstm`: split-conformal intervals at 50/80/90 % calibrated on the
validation windows, with absolute or window-scaled residuals, static (validation windows
only) or rolling (recalibrated as actuals arrive); for `lstm` with a quantile head
(0.1, 0.5, 0.9): the raw and the CQR-calibrated 80 % interval. Prints coverage and mean
width (scaled units) on every test window (stride 1) and writes them as JSON. The LSTM
trains on a capped budget (`--max-train-windows` per epoch) to fit a few minutes on one
core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model, metrics  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.evaluate import predict_dataset  # noqa: E402
from forecast.intervals import COVERAGE_LEVELS, ConformalIntervals, QuantileCalibration  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default=str(DEFAULT))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-train-windows", type=int, default=3000)
    p.add_argument("--max-val-windows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/interval_coverage.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = ett_bundle(pd.read_csv(args.data_path), "U", 96, 24)
    lstm = {
        "epochs": args.epochs,
        "max_train_windows": args.max_train_windows,
        "max_val_windows": args.max_val_windows,
        "seed": args.seed,
        "progress": False,
        "device": "cpu",
    }
    models = [
        ("naive", "naive", {}),
        ("linear", "linear", {}),
        ("lstm", "lstm", lstm),
        ("lstm_q", "lstm", {**lstm, "quantiles": (0.1, 0.5, 0.9)}),
    ]
    rows = []
    for label, name, params in models:
        start = time.perf_counter()
        model = create_model(name, data.layout, **params).fit(data.train, data.val)
        fit_s = time.perf_counter() - start
        val, test = predict_dataset(model, data.val), predict_dataset(model, data.test)
        point = {"mse": metrics.mse(test.target, test.prediction), "fit_seconds": fit_s}
        if test.quantiles is not None:
            raw = metrics.probabilistic_metrics(test.target, test.quantiles, test.quantile_levels)
            rows.append({"model": label, "intervals": "raw quantiles", **point, **raw})
        for rolling in (False, True):
            for method in ("absolute", "scaled"):
                if test.quantiles is not None:
                    if method == "scaled":
                        continue
                    cal = QuantileCalibration.calibrate(val, data.val, rolling=rolling)
                    kind = "cqr"
                else:
                    cal = ConformalIntervals.calibrate(
                        val, data.val, coverages=COVERAGE_LEVELS, method=method, rolling=rolling
                    )
                    kind = f"conformal {method}"
                q = cal.quantiles(test, data.test)
                found = metrics.probabilistic_metrics(test.target, q, cal.levels)
                kind += " rolling" if rolling else " static"
                rows.append({"model": label, "intervals": kind, **point, **found})
        for row in rows[-4:]:
            if row["model"] == label:
                print(
                    f"{label:7s} {row['intervals']:26s} mse {row['mse']:.4f} "
                    + " ".join(
                        f"cov{c} {row.get(f'coverage_{c}', float('nan')):.3f} "
                        f"w{c} {row.get(f'width_{c}', float('nan')):.3f}"
                        for c in ("50", "80", "90")
                    )
                    + f" crps {row['crps']:.4f} (fit {fit_s:.0f}s)",
                    flush=True,
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"data": "ETTh1", "track": "U", "input_length": 96, "horizon": 24}
    out.write_text(json.dumps({**meta, "threads": args.threads, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
