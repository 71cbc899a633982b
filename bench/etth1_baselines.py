"""The protocol sanity gate on ETTh1: baselines vs the figures in DESIGN.md.

    python bench/etth1_baselines.py [--data-path ../shared/data/ETTh1.csv]

Prints normalised test MSE / MAE over every test window (stride 1) next to the reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.evaluate import predict_dataset, score  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
# (track, L, H, model, reference MSE, reference MAE, where the reference comes from)
CASES = [
    ("M", 96, 96, "naive", 1.2944, 0.7132, "DESIGN.md numpy gate"),
    ("U", 96, 24, "naive", 0.0343, 0.1394, "DESIGN.md numpy gate"),
    ("U", 96, 24, "nlinear", 0.0260, 0.1222, "DESIGN.md numpy gate (ridge, its alpha)"),
    ("U", 336, 96, "nlinear", 0.0531, 0.1770, "DESIGN.md numpy gate"),
    ("U", 336, 96, "naive", None, None, ""),
    ("MS", 96, 24, "linear", None, None, ""),
    ("M", 336, 96, "nlinear", 0.375, 0.399, "DLinear paper (a linear model, not ridge)"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default=str(DEFAULT))
    args = p.parse_args()
    df = pd.read_csv(args.data_path)
    rows = []
    for track, L, H, name, ref_mse, ref_mae, source in CASES:
        t0 = time.perf_counter()
        data = ett_bundle(df, track, L, H)
        model = create_model(name, data.layout).fit(data.train, data.val)
        result = score(predict_dataset(model, data.test), data, data.test)
        rows.append(
            {
                "track": track,
                "L": L,
                "H": H,
                "model": name,
                "mse": round(result["mse"], 4),
                "mae": round(result["mae"], 4),
                "ref_mse": ref_mse,
                "ref_mae": ref_mae,
                "reference": source,
                "test_windows": len(data.test),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
