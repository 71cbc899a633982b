"""How much does a nonlinear model find beyond the ridge on a cell? (ETTh1 U, L96 H24 by default)

    python bench/ridge_residual.py [--track U] [--input 96] [--horizon 24]
        [--data-path ../shared/data/ETTh1.csv] [--out bench/results/ridge_residual.json]

The `nlinear` ridge (each target's window minus its last value -> its horizon minus the
same, alpha 1) is fitted on the training windows; then gradient-boosted trees
(scikit-learn's `HistGradientBoostingRegressor`, one per horizon step, on the window and
the ridge's forecast) are fitted to the ridge's training residuals, and the correction is
added with a shrinkage s in {0.25, 0.5, 1}, s chosen on the validation windows. Printed:
validation and test MSE of the ridge and of every ridge + s x correction. The gap
between the ridge and the best corrected forecast bounds what a network that learns
the window's nonlinear structure could gain over the ridge on this cell; issue #16 used
it to judge the segment model's ridge target on ETTh1 U L96 H24 (docs/benchmarks.md).
Threads and the OpenMP policy are printed and written with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.protocols import dataset_bundle  # noqa: E402
from forecast.data.windows import WindowDataset  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
SHRINKS = (0.25, 0.5, 1.0)


def nlinear_xy(ds: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """Windows and horizons of every target, relative to the window's last value."""
    b = ds.batch(np.arange(len(ds)))
    past, future = b["past_target"].numpy(), b["future_target"].numpy()  # [N, L or H, T]
    last = past[:, -1:]
    L, H = past.shape[1], future.shape[1]
    x = (past - last).transpose(0, 2, 1).reshape(-1, L)
    y = (future - last).transpose(0, 2, 1).reshape(-1, H)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--track", default="U", choices=["U", "MS", "M"])
    p.add_argument("--input", type=int, default=96)
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=Path("bench/results/ridge_residual.json"))
    args = p.parse_args()
    if not args.data_path.is_file():
        raise SystemExit(f"error: ETTh1 not found at {args.data_path}; pass --data-path")
    data = dataset_bundle("ETTh1", args.data_path, args.track, args.input, args.horizon)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = map(nlinear_xy, (data.train, data.val, data.test))
    ridge = Ridge(alpha=1.0).fit(x_tr, y_tr)
    windows = {"train": x_tr, "val": x_va, "test": x_te}
    base = {k: ridge.predict(x) for k, x in windows.items()}
    mse = lambda a, b: float(np.mean((a - b) ** 2))  # noqa: E731
    start = time.perf_counter()
    residual = y_tr - base["train"]
    features = {k: np.hstack([x, base[k]]) for k, x in windows.items()}
    correction = {k: np.zeros_like(base[k]) for k in ("val", "test")}
    for h in range(residual.shape[1]):
        trees = HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, early_stopping=False, random_state=0
        ).fit(features["train"], residual[:, h])
        for k in correction:
            correction[k][:, h] = trees.predict(features[k])
    seconds = time.perf_counter() - start
    rows = [{"model": "ridge", "val": mse(base["val"], y_va), "test": mse(base["test"], y_te)}]
    for s in SHRINKS:
        rows.append(
            {
                "model": f"ridge + {s} x trees",
                "val": mse(base["val"] + s * correction["val"], y_va),
                "test": mse(base["test"] + s * correction["test"], y_te),
            }
        )
    chosen = min(rows, key=lambda r: r["val"])
    policy = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    print(f"ETTh1 {args.track} L{args.input} H{args.horizon}, {len(x_tr)} training rows; "
          f"trees {seconds:.0f} s; {policy}, cpus {os.cpu_count()}")  # fmt: skip
    for r in rows:
        gap = r["test"] / rows[0]["test"] - 1
        print(f"{r['model']:<22} val {r['val']:.5f}  test {r['test']:.5f}  ({gap:+.1%} vs ridge)")
    print(f"chosen on validation: {chosen['model']} (test {chosen['test']:.5f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"track": args.track, "input": args.input, "horizon": args.horizon, **policy}
    result = {"setup": setup, "rows": rows, "chosen": chosen["model"]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
