"""The attention LSTMs on ETTh1, track U (OT in, OT out), input 96, horizon 24.

    python bench/etth1_lstm.py [--data-path ../shared/data/ETTh1.csv] [--epochs 8]
        [--attention none bahdanau luong_dot luong_general luong_concat local_m local_p]
        [--revin both|on|off]
        [--threads 2] [--out bench/results/etth1_lstm.json] [--set key=value ...]

Prints normalised test MSE / MAE over every test window (stride 1) next to repeat-last
and the NLinear ridge measured in the same run, with the training time of each model.
Every epoch trains on a fresh random subset of `--max-train-windows` windows and
validates (free-running) on `--max-val-windows` evenly spaced ones, to fit ~10 minutes
on 2 cores; the test always uses every window.
"""

from __future__ import annotations

# OpenMP's wait policy is left at its default (busy-waiting), the faster one on a quiet
# machine; on a machine shared with other jobs export OMP_WAIT_POLICY=PASSIVE (see
# bench/README.md).
import argparse
import ast
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.evaluate import predict_dataset, score  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
REFERENCE = {"naive": (0.0343, 0.1394), "nlinear": (0.0260, 0.1222)}  # DESIGN.md numpy gate


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default=str(DEFAULT))
    p.add_argument(
        "--attention", nargs="+", default=["none", "bahdanau", "luong_dot", "luong_general"]
    )
    p.add_argument("--revin", choices=["both", "on", "off"], default="both")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-train-windows", type=int, default=3000)
    p.add_argument("--max-val-windows", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="extra model parameters key=value")
    p.add_argument("--out", default="bench/results/etth1_lstm.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = ett_bundle(pd.read_csv(args.data_path), "U", 96, 24)
    extra = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = []

    def run(label: str, name: str, **params: object) -> None:
        start = time.perf_counter()
        model = create_model(name, data.layout, **params).fit(data.train, data.val)
        seconds = time.perf_counter() - start
        result = score(predict_dataset(model, data.test), data, data.test)
        hist = getattr(model, "history_", None)
        ref = REFERENCE.get(name, (None, None))
        rows.append(
            {
                "model": label,
                "test_mse": round(result["mse"], 4),
                "test_mae": round(result["mae"], 4),
                "ref_mse": ref[0],
                "best_val_mse": round(float(hist["val_loss"].min()), 4)
                if hist is not None
                else None,
                "epochs_run": len(hist) if hist is not None else None,
                "train_s": round(seconds, 1),
            }
        )
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)

    run("naive (repeat last)", "naive")
    run("nlinear (ridge)", "nlinear")
    revins = {"both": [False, True], "on": [True], "off": [False]}[args.revin]
    for revin in revins:
        for attention in args.attention:
            params = {
                "attention": attention,
                "revin": revin,
                "epochs": args.epochs,
                "max_train_windows": args.max_train_windows,
                "max_val_windows": args.max_val_windows,
                "seed": args.seed,
                "progress": False,
                **extra,
            }
            run(f"lstm {attention}{' +revin' if revin else ''}", "lstm", **params)
    table = pd.DataFrame(rows)
    print()
    print(f"ETTh1 track U, L=96, H=24, {len(data.test)} test windows, threads={args.threads}")
    print(table.to_string(index=False))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
