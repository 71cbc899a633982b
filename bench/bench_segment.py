"""Training speed of the segment-recurrent LSTM (`segrnn`) against the per-step `lstm`.

    python bench/bench_segment.py [--threads 1] [--repeats 3] [--windows 960 384]
                                  [--out bench/results/segment_throughput.json]

Random data shaped like ETTh1 track MS (7 input columns: 1 target, 6 past covariates) at
input 96 / horizon 24 and input 720 / horizon 96, every model with its registry defaults
(only `epochs=1`, no validation), trained one epoch by the real loop and timed by its
epoch clock (`history_['seconds']`): windows/s. Variants:

- `lstm`: the per-step default in its content phase (`attention_warmup=0`: the encoder
  and decoder LSTMs run; this is the reference of the ratios). In its first phase
  (`lstm_warmup`, the default's first epochs) the read decoder runs no LSTM at all: its
  lag prior is a linear read of the window, timed for information.
- `floor`: the bare per-step floor (`bench_floor.BareDirect`: an `nn.LSTM` encoder over
  every step, one decoder call, a linear head, fused Adam) at the per-step `lstm`'s hidden
  size, batch and lr. The issue's bare probe of the segment idea trained 3.0x faster than
  this floor at L=96 (its "about 7x the default lstm" of the time); column `vs floor`.
- `segrnn`, `segrnn_bahdanau`: the segment models with their defaults (segments of 12 at
  L=96, 48 at L=720; a GRU cell); `segrnn_lstm`: the LSTM cell; `segrnn_b128`: batch
  128; `segrnn_h128`: hidden_size 128.

The variants run interleaved in `--repeats` rounds (every variant once per round), so a
slow spell of a shared machine costs each variant one run; the ratio is the median over
rounds of (segment windows/s) / (lstm windows/s) of the same round, beside the ratio of
the best runs. Threads, the OpenMP wait policy and the load averages go into the JSON.
Issue targets: >= 5x at L=96, >= 30x at L=720.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_floor import time_floor
from throughput import run_rounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.windows import WindowDataset, WindowLayout  # noqa: E402

CASES = [(96, 24), (720, 96)]
TARGETS = {96: 5.0, 720: 30.0}
REFERENCE = "lstm"
# Not a model: the bare per-step floor (`bench_floor.BareDirect`, an nn.LSTM encoder over
# every step, one decoder call, fused Adam) at the per-step lstm's hidden size, batch and
# lr; the probe of the segment idea trained 3.0x faster than it.
FLOOR = "floor"
# name -> (registry model, extra parameters)
VARIANTS = {
    "lstm": ("lstm", {"attention_warmup": 0}),
    "lstm_warmup": ("lstm", {}),
    "segrnn": ("segrnn", {}),
    "segrnn_bahdanau": ("segrnn_bahdanau", {}),
    # Other settings measured in docs/benchmarks.md.
    "segrnn_lstm": ("segrnn", {"cell": "lstm"}),
    "segrnn_b128": ("segrnn", {"batch_size": 128}),
    "segrnn_h128": ("segrnn", {"hidden_size": 128}),
}


def dataset(L: int, H: int, n_windows: int, seed: int = 0) -> WindowDataset:
    """`n_windows` windows of standard normal data, 1 target and 6 past covariates."""
    layout = WindowLayout(L, H, ("y",), tuple(f"x{i}" for i in range(6)))
    rows = n_windows + L + H - 1
    data = torch.from_numpy(np.random.default_rng(seed).standard_normal((rows, 7), np.float32))
    return WindowDataset(data, np.arange(n_windows), layout, np.zeros(n_windows, np.int32))


def time_variant(name: str, ds: WindowDataset) -> tuple[float, float]:
    """One epoch of `name` on `ds` by the real loop: (windows/s by the epoch clock,
    windows per CPU-second of this process over the whole fit)."""
    if name == FLOOR:  # the bare per-step floor, at the per-step `lstm`'s own settings
        cfg = create_model(REFERENCE, ds.layout).config
        cpu = time.process_time()
        seconds = time_floor(ds, cfg.hidden_size, cfg.train.batch_size, cfg.train.lr)
        return len(ds) / seconds, len(ds) / (time.process_time() - cpu)
    model_name, extra = VARIANTS[name]
    model = create_model(
        model_name, ds.layout, epochs=1, progress=False, device="cpu", seed=0, **extra
    )
    cpu = time.process_time()
    model.fit(ds)
    cpu = time.process_time() - cpu
    return len(ds) / float(model.history_["seconds"].iloc[0]), len(ds) / cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--windows", nargs=2, type=int, default=[960, 384], help="windows per run, L=96 and L=720"
    )
    every = [*VARIANTS, FLOOR]
    p.add_argument("--only", nargs="*", default=None, help=f"variants (default: {every})")
    p.add_argument("--out", default="bench/results/segment_throughput.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only or every
    if REFERENCE not in names:
        names = [REFERENCE, *names]
    load_before = os.getloadavg()
    time_variant("segrnn", dataset(96, 24, 64))  # warm-up (allocations, oneDNN kernels)
    cases = []
    for (L, H), n in zip(CASES, args.windows, strict=True):
        ds = dataset(L, H, n)
        runs = run_rounds(names, lambda name, ds=ds: time_variant(name, ds), args.repeats)
        ref = [r[0] for r in runs[REFERENCE]]
        floor = [r[0] for r in runs[FLOOR]] if FLOOR in runs else None
        rows = []
        for name in names:
            speed = [r[0] for r in runs[name]]
            per_round = [s / r for s, r in zip(speed, ref, strict=True)]
            vs_floor = None
            if floor is not None:
                vs_floor = float(np.median([s / f for s, f in zip(speed, floor, strict=True)]))
            rows.append(
                {
                    "variant": name,
                    "windows_per_s": round(max(speed), 1),
                    "windows_per_s_median": round(float(np.median(speed)), 1),
                    "windows_per_cpu_s": round(max(r[1] for r in runs[name]), 1),
                    "ratio_vs_lstm": round(float(np.median(per_round)), 2),
                    "ratio_vs_lstm_best": round(max(speed) / max(ref), 2),
                    "ratio_per_round": [round(x, 2) for x in per_round],
                    "ratio_vs_floor": None if vs_floor is None else round(vs_floor, 2),
                }
            )
        target = TARGETS[L]
        met = {r["variant"]: r["ratio_vs_lstm"] >= target for r in rows if "segrnn" in r["variant"]}
        cases.append(
            {"L": L, "H": H, "windows": n, "target_ratio": target, "met": met, "rows": rows}
        )
        print(f"\nL={L} H={H}, {n} windows/run, {args.repeats} interleaved rounds")
        head = ("variant", "windows/s", "median", "ratio (median)", "ratio (best)", "vs floor")
        print("{:<18}{:>11}{:>9}{:>16}{:>14}{:>10}".format(*head))
        for r in rows:
            vs = f"{r['ratio_vs_floor']:>9.2f}x" if r["ratio_vs_floor"] is not None else ""
            print(
                f"{r['variant']:<18}{r['windows_per_s']:>11.0f}{r['windows_per_s_median']:>9.0f}"
                f"{r['ratio_vs_lstm']:>15.2f}x{r['ratio_vs_lstm_best']:>13.2f}x{vs}"
            )
        print(f"target >= {target:.0f}x: " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                                   for k, v in met.items()))  # fmt: skip
    load_after = os.getloadavg()
    policy = os.environ.get("OMP_WAIT_POLICY")
    print(
        f"threads {torch.get_num_threads()}, OMP_WAIT_POLICY={policy}, "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "setup": {
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "repeats": args.repeats,
            "input_columns": 7,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "variants": {k: {"model": m, **extra} for k, (m, extra) in VARIANTS.items()},
        },
        "cases": cases,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
