"""Training throughput, ours vs darts / neuralforecast / pytorch-forecasting, in one run.

    /work/bench-venv/bin/python bench/compare_peers.py [--repeats 3] [--ours lstm_luong_tf ...]
        [--peers nf_lstm darts_rnn darts_transformer ...] [--out bench/results/compare_peers.json]

Needs the benchmark venv (`bash bench/peers/setup.sh`), which holds the peers and the
toolkit (editable) on the same torch 2.13.0, so both sides run in one process, on the same
data, interleaved: repeat r times every model once, take the median per model. A load
spike then hits ours and theirs alike; only the ratios printed here are meant to be
compared (see docs/benchmarks.md).

Reference setup: ETTh1 training windows of the protocol (8,521 at L=96, H=24), 7 input
columns (track MS: OT out; darts' RNNModel takes no past covariates, so it runs track M),
hidden / d_model 64, batch 32, one epoch, no validation, `torch.set_num_threads(2)`.
Ours is timed by the training loop's own per-epoch clock (`history_['seconds']`: the
epoch, without model construction); CPU seconds are the process time around `fit`.
Issue targets: attention LSTM (Luong, teacher forcing) >= 10x faster per epoch than
neuralforecast's LSTM and darts' RNNModel; transformer >= 3x faster than darts'
TransformerModel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH / "peers"))
import peer_throughput as peers  # noqa: E402

from forecast import create_model  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402

# name -> (registered model, track, parameters on top of the shared training settings)
OURS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lstm_luong_tf": ("lstm_luong", "MS", {"teacher_forcing": 1.0}),
    "lstm_dot_tf": ("lstm", "MS", {"teacher_forcing": 1.0}),  # the default: Luong dot
    "lstm_luong_free": ("lstm_luong", "MS", {"teacher_forcing": 0.0}),
    "lstm_bahdanau_tf": ("lstm_bahdanau", "MS", {"teacher_forcing": 1.0}),
    "transformer_tf": ("transformer", "MS", {"teacher_forcing": 1.0}),
    "transformer_direct": ("transformer_direct", "MS", {}),
    "nlinear": ("nlinear", "MS", {}),
}
# (ours, theirs, required speed-up or None for information only)
PAIRS: list[tuple[str, str, float | None]] = [
    ("lstm_luong_tf", "nf_lstm", 10.0),
    ("lstm_luong_tf", "darts_rnn", 10.0),
    ("lstm_dot_tf", "nf_lstm", 10.0),
    ("lstm_dot_tf", "darts_rnn", 10.0),
    ("transformer_tf", "darts_transformer", 3.0),
    ("lstm_luong_free", "nf_lstm", None),
    ("lstm_luong_free", "darts_rnn", None),
    ("lstm_bahdanau_tf", "nf_lstm", None),
    ("transformer_direct", "darts_transformer", None),
    ("transformer_tf", "darts_tft", None),
    ("transformer_tf", "ptf_tft", None),
    ("nlinear", "darts_nlinear", None),
    ("nlinear", "nf_nlinear", None),
]
DEFAULT_OURS = [
    "lstm_luong_tf",
    "lstm_dot_tf",
    "lstm_luong_free",
    "lstm_bahdanau_tf",
    "transformer_tf",
    "transformer_direct",
    "nlinear",
]
DEFAULT_PEERS = ["nf_lstm", "darts_rnn", "darts_transformer", "darts_nlinear", "nf_nlinear"]


def our_params(name: str, setup: peers.Setup) -> dict[str, Any]:
    """Parameters of our model `name` at the reference setup."""
    model, _, extra = OURS[name]
    if model == "nlinear":
        return dict(extra)
    width = "d_model" if model.startswith("transformer") else "hidden_size"
    return {
        width: setup.hidden,
        "batch_size": setup.batch_size,
        "epochs": 1,
        "patience": None,
        "tf_schedule": "constant",
        "seed": setup.seed,
        "device": "cpu",
        "progress": False,
        **extra,
    }


def time_ours(name: str, setup: peers.Setup, bundles: dict[str, Any]) -> dict[str, float]:
    """One training epoch of our model `name`: wall seconds (the loop's own epoch clock;
    for the closed-form nlinear the whole fit) and process CPU seconds around `fit`."""
    model_name, track, _ = OURS[name]
    data = bundles[track]
    model = create_model(model_name, data.layout, **our_params(name, setup))
    torch.set_num_threads(setup.threads)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data.train, None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    history = getattr(model, "history_", None)
    if history is not None and len(history):
        wall = float(history["seconds"].iloc[0])
    return {"seconds": wall, "cpu_seconds": cpu}


def ratio_rows(
    ours: dict[str, peers.Timing], theirs: dict[str, peers.Timing]
) -> list[dict[str, Any]]:
    """Speed-up theirs / ours per pair (wall and CPU medians), against the targets."""
    rows = []
    for a, b, target in PAIRS:
        if a not in ours or b not in theirs:
            continue
        wall = theirs[b].median / ours[a].median
        cpu = statistics.median(theirs[b].cpu_seconds) / statistics.median(ours[a].cpu_seconds)
        rows.append(
            {
                "ours": a,
                "theirs": b,
                "ours s": round(ours[a].median, 2),
                "theirs s": round(theirs[b].median, 2),
                "speed-up": round(wall, 1),
                "speed-up (cpu)": round(cpu, 1),
                "target": f">= {target:g}x" if target else "-",
                "met": ("yes" if wall >= target else "NO") if target else "-",
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", type=Path, default=peers.DEFAULT_DATA)
    p.add_argument("--ours", nargs="*", default=DEFAULT_OURS, choices=list(OURS))
    p.add_argument("--peers", nargs="*", default=DEFAULT_PEERS, choices=list(peers.PEERS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=BENCH / "results" / "compare_peers.json")
    args = p.parse_args()
    peers.quiet()
    setup = peers.Setup(data_path=args.data_path, threads=args.threads)
    torch.set_num_threads(setup.threads)
    frame = pd.read_csv(setup.data_path)
    bundles = {
        track: ett_bundle(frame, track, setup.input_length, setup.horizon)
        for track in {OURS[n][1] for n in args.ours}
    }
    df = peers.scaled_train_frame(setup)
    ours = {}
    for name in args.ours:
        model, track, _ = OURS[name]
        t = peers.Timing(
            name,
            "forecast",
            "0.1.0",
            model,
            track,
            7,
            len(bundles[track].train),
            "training loop epoch clock (no construction); nlinear: closed-form fit",
        )
        t.config = our_params(name, setup)
        ours[name] = t
    theirs = {name: peers.new_timing(name, setup) for name in args.peers}
    for r in range(args.repeats):  # interleaved: a load spike hits ours and theirs alike
        for name, t in ours.items():
            t.load.append(round(peers.load_average(), 2))
            measured = time_ours(name, setup, bundles)
            t.seconds.append(round(measured["seconds"], 3))
            t.cpu_seconds.append(round(measured["cpu_seconds"], 3))
            print(
                f"repeat {r + 1}: ours {name} {t.seconds[-1]:.2f} s (load {t.load[-1]:.1f})",
                flush=True,
            )
        for name, t in theirs.items():
            peers.time_peer(name, setup, df, t)
            print(
                f"repeat {r + 1}: {name} {t.seconds[-1]:.2f} s (load {t.load[-1]:.1f})", flush=True
            )
    print(f"\nreference setup: {asdict(setup)} | nproc {os.cpu_count()} | median of {args.repeats}")
    print("\nours")
    print(peers.table(list(ours.values())).to_string(index=False))
    print("\ntheirs")
    print(peers.table(list(theirs.values())).to_string(index=False))
    ratios = ratio_rows(ours, theirs)
    print("\nspeed-up = their seconds per epoch / ours (same run)")
    print(pd.DataFrame(ratios).to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "setup": {**asdict(setup), "data_path": str(setup.data_path), "repeats": args.repeats},
        "versions": peers.versions(),
        "nproc": os.cpu_count(),
        "ours": [t.as_dict() for t in ours.values()],
        "theirs": [t.as_dict() for t in theirs.values()],
        "ratios": ratios,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
