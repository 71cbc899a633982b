"""Training throughput, ours vs darts / neuralforecast / pytorch-forecasting, in one run.

    /work/bench-venv/bin/python bench/compare_peers.py [--repeats 3] [--threads 2]
        [--ours lstm_ar_tf ...] [--peers nf_lstm darts_rnn ...] [--max-windows N]
        [--out bench/results/compare_peers.json]

Needs the benchmark venv (`bash bench/peers/setup.sh`), which holds the peers and the
toolkit (editable) on the same torch 2.13.0, so both sides run in one process, on the same
data, interleaved: repeat r times every model once, take the median per model. A load
spike then hits ours and theirs alike; only the ratios printed here are meant to be
compared (see docs/benchmarks.md).

Reference setup: ETTh1 training windows of the protocol (8,521 at L=96, H=24), 7 input
columns (track MS: OT out; darts' RNNModel takes no past covariates, so it runs track M),
hidden / d_model 64, batch 32, one epoch, no validation, `torch.set_num_threads(2)` (ours
get the same count as an explicit `threads`). `--max-windows N` trains every model on N
windows (smoke runs; not the reference). OpenMP's wait policy is whatever the environment
gives libgomp (torch loads before forecast here, so forecast chooses none): set
`OMP_WAIT_POLICY` on the command line to pin it; the results file records it.

Ours is timed by the training loop's own per-epoch clock (`history_['seconds']`: the
epoch, without model construction or the read decoder's warm start); CPU seconds are the
process time of the epoch's training pass (`Trainer._train_epoch`, what the epoch clock
times but for the loop's bookkeeping; not the free-running check that follows a
teacher-forced epoch), for the closed-form nlinear of the whole `fit`. The read-decoder
LSTMs run with `attention_warmup=0`, so the timed epoch is their content phase (the one
where the LSTMs run).

Issue #16's check: at full teacher forcing, our per-step LSTMs (the read decoder decoding
autoregressively, Luong dot and Bahdanau; the classic decoder) train >= 1.0x as fast per
epoch as neuralforecast's LSTM and darts' RNNModel, which never feed their own forecasts
back in training either (darts' RNNModel is teacher-forced, neuralforecast's LSTM decodes
every step at once from the encoder). The other pairs are information only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH / "peers"))
import peer_throughput as peers  # noqa: E402

from forecast import create_model, training  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402

# The read decoder decoding step by step (teacher forcing needs it), content from epoch 1.
PER_STEP_TF = {
    "decoding": "autoregressive",
    "teacher_forcing": 1.0,
    "attention_warmup": 0,
}
# name -> (registered model, track, parameters on top of the shared training settings)
OURS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lstm_ar_tf": ("lstm", "MS", PER_STEP_TF),  # read decoder, Luong dot
    "lstm_bahdanau_ar_tf": ("lstm_bahdanau", "MS", PER_STEP_TF),
    "lstm_classic_tf": ("lstm_classic", "MS", {"teacher_forcing": 1.0}),  # fused Luong dot
    "lstm_direct": ("lstm", "MS", {"attention_warmup": 0}),  # the default, content phase
    # The same work as their plain LSTMs (no attention): what our loop costs against theirs.
    "lstm_plain_tf": ("lstm_classic", "MS", {"teacher_forcing": 1.0, "attention": "none"}),
    "transformer_tf": ("transformer", "MS", {"teacher_forcing": 1.0}),
    "transformer_direct": ("transformer_direct", "MS", {}),
    "nlinear": ("nlinear", "MS", {}),
}
FULL_TF = 1.0  # issue #16: >= 1.0x their seconds per epoch at full teacher forcing
# (ours, theirs, required speed-up or None for information only)
PAIRS: list[tuple[str, str, float | None]] = [
    ("lstm_ar_tf", "nf_lstm", FULL_TF),
    ("lstm_ar_tf", "darts_rnn", FULL_TF),
    ("lstm_bahdanau_ar_tf", "nf_lstm", FULL_TF),
    ("lstm_bahdanau_ar_tf", "darts_rnn", FULL_TF),
    ("lstm_classic_tf", "nf_lstm", FULL_TF),
    ("lstm_classic_tf", "darts_rnn", FULL_TF),
    ("lstm_direct", "nf_lstm", None),
    ("lstm_plain_tf", "nf_lstm", None),
    ("lstm_plain_tf", "darts_rnn", None),
    ("lstm_direct", "darts_rnn", None),
    ("transformer_tf", "darts_transformer", None),
    ("transformer_direct", "darts_transformer", None),
    ("transformer_tf", "darts_tft", None),
    ("transformer_tf", "ptf_tft", None),
    ("nlinear", "darts_nlinear", None),
    ("nlinear", "nf_nlinear", None),
]
DEFAULT_OURS = [
    "lstm_ar_tf",
    "lstm_bahdanau_ar_tf",
    "lstm_classic_tf",
    "lstm_direct",
    "lstm_plain_tf",
]
DEFAULT_PEERS = ["nf_lstm", "darts_rnn"]


def our_params(name: str, setup: peers.Setup) -> dict[str, Any]:
    """Parameters of our model `name` at the reference setup."""
    model, _, extra = OURS[name]
    if model == "nlinear":
        return dict(extra)
    width = "d_model" if model.startswith("transformer") else "hidden_size"
    subset = {} if setup.max_windows is None else {"max_train_windows": setup.max_windows}
    return {
        width: setup.hidden,
        "batch_size": setup.batch_size,
        "epochs": 1,
        "patience": None,
        "tf_schedule": "constant",
        "seed": setup.seed,
        "device": "cpu",
        "progress": False,
        "threads": setup.threads,  # explicit: 'auto' could pick fewer than the peers get
        **subset,
        **extra,
    }


def n_windows(name: str, setup: peers.Setup, bundles: dict[str, Any]) -> int:
    """Windows one epoch of our model `name` trains on (the closed-form nlinear: all)."""
    n = len(bundles[OURS[name][1]].train)
    closed_form = OURS[name][0] == "nlinear"
    return n if setup.max_windows is None or closed_form else min(n, setup.max_windows)


@contextmanager
def train_pass_cpu() -> Iterator[list[float]]:
    """Inside the block, the process CPU seconds of each training pass of the toolkit's
    loop (`forecast.training.Trainer._train_epoch`) are appended to the list yielded."""
    original = training.Trainer._train_epoch
    spent: list[float] = []

    def timed(self: training.Trainer, *args: Any, **kwargs: Any) -> Any:
        cpu = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.process_time() - cpu)

    training.Trainer._train_epoch = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        training.Trainer._train_epoch = original  # type: ignore[method-assign]


def time_ours(name: str, setup: peers.Setup, bundles: dict[str, Any]) -> dict[str, float]:
    """One training epoch of our model `name`: wall seconds (the loop's own epoch clock)
    and process CPU seconds of its training pass (for the closed-form nlinear: both of
    the whole fit).
    Raises if an entry meant to time the read decoder's content phase ran its lag-prior
    phase (no LSTM) instead."""
    model_name, track, _ = OURS[name]
    data = bundles[track]
    model = create_model(model_name, data.layout, **our_params(name, setup))
    torch.set_num_threads(setup.threads)
    wall, cpu = time.perf_counter(), time.process_time()
    with train_pass_cpu() as passes:
        model.fit(data.train, None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    history = getattr(model, "history_", None)
    if history is not None and len(history):
        if len(passes) != len(history):
            raise RuntimeError(f"{name}: {len(passes)} training passes timed, not {len(history)}")
        wall, cpu = float(history["seconds"].iloc[0]), passes[0]
        content = OURS[name][2].get("attention_warmup") == 0
        if content and int(history["phase"].iloc[0]) != 2:
            raise RuntimeError(f"{name}: epoch 1 ran phase {history['phase'].iloc[0]}, not 2")
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
                "speed-up": round(wall, 2),
                "speed-up (cpu)": round(cpu, 2),
                "target": "-" if target is None else f">= {target:.1f}x",
                "met": "-" if target is None else ("yes" if wall >= target else "NO"),
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
    p.add_argument("--max-windows", type=int, default=None, help="smoke runs: N windows each")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "compare_peers.json")
    args = p.parse_args()
    peers.quiet()
    setup = peers.Setup(
        data_path=args.data_path, threads=args.threads, max_windows=args.max_windows
    )
    load_start = os.getloadavg()
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
            n_windows(name, setup, bundles),
            "training loop epoch clock (no construction, no warm start); CPU: the epoch's "
            "training pass; nlinear: closed-form fit",
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
            t.threads.append(torch.get_num_threads())
            print(
                f"repeat {r + 1}: ours {name} {t.seconds[-1]:.2f} s (load {t.load[-1]:.1f})",
                flush=True,
            )
        for name, t in theirs.items():
            peers.time_peer(name, setup, df, t)
            print(
                f"repeat {r + 1}: {name} {t.seconds[-1]:.2f} s (load {t.load[-1]:.1f})", flush=True
            )
    openmp = peers.openmp()
    print(f"\nsetup: {asdict(setup)} | nproc {os.cpu_count()} | median of {args.repeats}")
    print(
        f"threads {openmp['torch_threads']} | OpenMP policy {openmp['policy']} | "
        f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
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
        "openmp": openmp,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "ours": [t.as_dict() for t in ours.values()],
        "theirs": [t.as_dict() for t in theirs.values()],
        "ratios": ratios,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
