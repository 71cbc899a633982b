"""Every speed figure of issue 16 in one command.

    python bench/run_all.py --quick          # a few minutes (more on a loaded machine)
    python bench/run_all.py                  # the fuller sizes
    python bench/run_all.py --only floor segment --threads 1

Sections (`--only` picks some):

- `floor`: ours against the bare-kernel floor, every attention type on the default
  schedule: `bench_floor.py` when it is there (issue 16 item 1), else `bench_lstm.py`'s
  variants (fast path and fused loops vs the step loop), in a subprocess each.
- `segment`: the segment model (`segrnn`) against the per-step `lstm`, L 96 and L 720
  (`bench_segment.py`'s timing).
- `mse`: time to a test MSE (default <= 0.030) on ETTh1 track U, L 96 H 24: `lstm` with
  its defaults, the test MSE read after every epoch (the loop's per-epoch evaluation,
  run on the test windows, patience off: a trace, not model selection). Peers: when
  the benchmark venv (bench/peers, /work/bench-venv) is present,
  `bench/peers/peer_mse_latency.py` runs in it (a subprocess, its output streamed):
  neuralforecast's LSTM and darts' RNNModel(LSTM) on the same scaled windows, their test
  MSE after every epoch, their training seconds (evaluation excluded), then their
  one-window latency and windows/s over every test window; without the venv a
  "NOT measured" line.
- `predict`: one-window latency and batch-256 throughput (`inference_latency.time_calls`)
  and the windows/s of predicting every ETTh1 test window (`predict_dataset`), track MS
  and track U (the peers' track); the peers' figures when `mse` did not run them.
- `e2e`: end-to-end wall time of the default experiment and the ETTh1 U config
  (`python run_experiment.py`, in a temporary folder, one worker) against the sum of
  its (model, seed) fit and predict seconds (`fit_seconds`, `predict_seconds` of each
  `results/<model>/seed<k>.json`). Issue 16's check: <= 20 % of the wall time outside.
  `--quick` trains one epoch per model and seed 0 only: the share outside is then an
  upper bound (the fixed costs stay, the fitting shrinks).

Every figure is printed with the threads and OpenMP wait policy it ran with. The
subprocess sections inherit this process's OpenMP policy (`import forecast` sets it
before torch loads; see forecast/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import forecast  # noqa: E402, F401, I001  (sets OpenMP's wait policy before torch loads)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from forecast import create_model, threads  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.evaluate import predict_dataset  # noqa: E402

ETTH1 = ROOT.parent / "shared" / "data" / "ETTh1.csv"
PEER_VENV = Path("/work/bench-venv/bin/python")
SECTIONS = ("floor", "segment", "mse", "predict", "e2e")
# Sizes: (quick, full).
SIZES = {
    "floor_windows": (384, 2048),
    "repeats": (2, 5),
    "segment_windows": ((192, 48), (960, 384)),
    "mse_epochs": (4, 10),
    "latency_runs": (20, 50),
    "e2e_seeds": ("[0]", "[0]"),  # the share hardly depends on the seeds: each adds fits
}


def tag() -> str:
    """The threads and OpenMP policy in effect, for every printed figure."""
    choice = threads.current()
    policy = choice.policy if choice is not None else threads.policy_of(os.environ)
    return f"[threads={torch.get_num_threads()}, OpenMP {policy}, load {os.getloadavg()[0]:.2f}]"


def run_script(args: list[str]) -> str:
    """Run a bench script (or the CLI) with this interpreter; its output, echoed."""
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    text = out.stdout + (out.stderr if out.returncode else "")
    print(text.rstrip(), flush=True)
    if out.returncode:
        print(f"(exit code {out.returncode})")
    return text


def floor(n_threads: int, quick: bool) -> None:
    """Ours vs the bare-kernel floor, every attention type (a bench script)."""
    i = 0 if quick else 1
    common = ["--repeats", str(SIZES["repeats"][i]), "--windows", str(SIZES["floor_windows"][i])]
    if (ROOT / "bench" / "bench_floor.py").is_file():
        models = ["lstm", "lstm_bahdanau", "lstm_luong", "lstm_local"]
        run_script(["bench/bench_floor.py", "--threads", str(n_threads), *common,
                    "--models", *models, "--out", "bench/results/run_all_floor.json"])  # fmt: skip
    else:
        print("(bench/bench_floor.py is not on this branch: bench_lstm.py's variants instead)")
        run_script(["bench/bench_lstm.py", "--threads", str(n_threads), *common,
                    "--out", "bench/results/run_all_lstm.json"])  # fmt: skip


def segment(quick: bool) -> None:
    """`segrnn` vs the per-step `lstm`, training windows/s (bench_segment's timing)."""
    from bench_segment import dataset, time_variant

    sizes = SIZES["segment_windows"][0 if quick else 1]
    repeats = SIZES["repeats"][0 if quick else 1]
    time_variant("segrnn", dataset(96, 24, 64))  # warm-up
    for (L, H), n in zip([(96, 24), (720, 96)], sizes, strict=True):
        ds = dataset(L, H, n)
        speed = {name: [] for name in ("lstm", "segrnn")}
        for _ in range(repeats):  # interleaved rounds
            for name in speed:
                speed[name].append(time_variant(name, ds)[0])
        ratio = [s / r for s, r in zip(speed["segrnn"], speed["lstm"], strict=True)]
        print(
            f"L={L} H={H}, {n} windows: lstm {max(speed['lstm']):.0f} windows/s, segrnn "
            f"{max(speed['segrnn']):.0f} windows/s, ratio {np.median(ratio):.1f}x "
            f"(target >= {5 if L == 96 else 30}x) {tag()}"
        )


def time_to_mse(target: float, quick: bool, n_threads: int) -> None:
    """Seconds of training until `lstm`'s test MSE on ETTh1 U L96 H24 reaches `target`."""
    data = ett_bundle(pd.read_csv(ETTH1), "U", 96, 24)
    epochs = SIZES["mse_epochs"][0 if quick else 1]
    model = create_model("lstm", data.layout, epochs=epochs, patience=None, progress=False)
    start = time.perf_counter()
    model.fit(data.train, data.test)  # val_loss per epoch = the test MSE (scaled space)
    wall = time.perf_counter() - start
    h = model.history_
    setup = wall - h["seconds"].sum()  # the warm start (least squares), before epoch 1
    elapsed = h["seconds"].cumsum() + setup
    print(f"  before epoch 1 (network, warm start): {setup:.1f} s")
    for epoch, mse, sec in zip(h["epoch"], h["val_loss"], elapsed, strict=True):
        print(f"  epoch {epoch}: test mse {mse:.4f}, {sec:.1f} s so far")
    hit = h.index[h["val_loss"] <= target]
    if len(hit):
        k = hit[0]
        print(
            f"ours (lstm): test MSE <= {target} after epoch {h['epoch'][k]}, "
            f"{elapsed[k]:.1f} s of fitting (warm start and each epoch's test evaluation "
            f"included) {tag()}"
        )
    else:
        print(f"ours (lstm): test MSE NOT <= {target} in {epochs} epochs "
              f"(best {h['val_loss'].min():.4f}) {tag()}")  # fmt: skip
    run_peers("mse", target, quick, n_threads)


_PEERS_RUN: list[str] = []  # the section that ran the peers (they run once per process)


def run_peers(section: str, target: float, quick: bool, n_threads: int) -> None:
    """The peers' time to `target`, one-window latency and throughput (neuralforecast
    LSTM, darts RNNModel; bench/peers/peer_mse_latency.py in the benchmark venv, output
    streamed), once: the second of `mse` / `predict` points to the first's output."""
    if _PEERS_RUN:
        print(f"peers: printed in the {_PEERS_RUN[0]} section above (one run times both)")
        return
    _PEERS_RUN.append(section)
    if not PEER_VENV.is_file():
        print("peers: the benchmark venv is not installed here (bash bench/peers/setup.sh); "
              "darts / neuralforecast time to MSE, latency, throughput NOT measured")  # fmt: skip
        return
    argv = [str(PEER_VENV), "bench/peers/peer_mse_latency.py", "--target", str(target),
            "--threads", str(n_threads), *(["--quick"] if quick else [])]  # fmt: skip
    print(f"peers ({' '.join(argv[1:])}):", flush=True)
    # The script puts this checkout first on sys.path (its toolkit, not the venv's).
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:  # fmt: skip
        for line in proc.stdout or ():
            print(line.rstrip(), flush=True)
    if proc.returncode:
        print(f"(peers: exit code {proc.returncode})")


def predict(quick: bool) -> None:
    """One-window latency, batch-256 and whole-test-set throughput on ETTh1 (tracks MS, U),
    timed as `inference_latency.py` does (`time_calls`: medians after warm-up calls)."""
    from inference_latency import time_calls

    frame = pd.read_csv(ETTH1)
    bundles = {track: ett_bundle(frame, track, 96, 24) for track in ("MS", "U")}
    runs = SIZES["latency_runs"][0 if quick else 1]
    # lstm's first phase reads a learned lag prior (no LSTM runs); its trained network
    # runs the content phase, so both are timed. Track U: the peers' (run_peers).
    content = {"attention_warmup": 0}
    cases = [("MS", "lstm", {}), ("MS", "lstm", content), ("MS", "segrnn", {}),
             ("U", "lstm", {}), ("U", "lstm", content)]  # fmt: skip
    for track, name, extra in cases:
        data = bundles[track]
        model = create_model(name, data.layout, epochs=1, progress=False, patience=None, **extra)
        model.fit(data.train.subset(np.arange(64)), None)  # latency does not need training
        one, _ = time_calls(model, data.test.batch(np.arange(1)), runs)
        many, _ = time_calls(model, data.test.batch(np.arange(256)), max(3, runs // 5))
        start = time.perf_counter()
        predict_dataset(model, data.test)
        seconds = time.perf_counter() - start
        label = f"{name}{' (content phase)' if extra else ''}, track {track}"
        print(
            f"{label}: one window {1000 * np.median(one):.2f} ms, batch 256 "
            f"{256 / np.median(many):.0f} windows/s, every test window ({len(data.test)}) "
            f"{len(data.test) / seconds:.0f} windows/s {tag()}"
        )


def end_to_end(quick: bool) -> None:
    """Wall time of the default experiment and the ETTh1 U config against the sum of
    their fit and predict seconds."""
    seeds = SIZES["e2e_seeds"][0 if quick else 1]
    # --quick: one seed and one epoch per model. The run's fixed costs (data, reports,
    # plots, checkpoints) stay, so its share outside fit/predict is an upper bound.
    quick_args = ["--set", "train.epochs=1"] if quick else []
    runs = {
        "default (python run_experiment.py)": [],
        "configs/etth1_u.toml": ["--config", "configs/etth1_u.toml"],
    }
    for label, config in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            argv = ["run_experiment.py", *config, "--set", f"run.output_dir={tmp}",
                    "--set", "run.name=r", "--set", "run.workers=1", "--set", f"run.seeds={seeds}",
                    "--quiet", "--no-progress", *quick_args]  # fmt: skip
            start = time.perf_counter()
            out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if out.returncode:
                print(f"{label}: exit code {out.returncode}\n{out.stderr[-2000:]}")
                continue
            rows = [
                json.loads(p.read_text()) for p in Path(tmp, "r", "results").glob("*/seed*.json")
            ]
            env = json.loads(Path(tmp, "r", "environment.json").read_text())
            fit = sum(r["fit_seconds"] for r in rows)
            pred = sum(r.get("predict_seconds", 0.0) for r in rows)
            outside = 1 - (fit + pred) / wall
            choice = env.get("threads") or {}
            print(
                f"{label}, seeds {seeds}{', 1 epoch' if quick else ''}, {len(rows)} fits: "
                f"wall {wall:.1f} s, fit {fit:.1f} s, "
                f"predict {pred:.1f} s, outside fitting and predicting {100 * outside:.0f} % "
                f"(target <= 20 %: {'met' if outside <= 0.2 else 'NOT met'}) "
                f"[threads={env.get('torch_threads')}, OpenMP {choice.get('policy')}, "
                f"load seen {choice.get('load')}]"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--threads", default="auto", help="'auto' (default) or a count")
    p.add_argument("--mse", type=float, default=0.030, help="the test MSE to reach")
    args = p.parse_args()
    choice = threads.apply(args.threads if args.threads == "auto" else int(args.threads))
    print(f"forecast bench/run_all.py{' --quick' if args.quick else ''}: torch "
          f"{torch.__version__}, {choice.cores} usable cores, {tag()}")  # fmt: skip
    start = time.perf_counter()
    for section in args.only:
        print(f"\n== {section} ==", flush=True)
        t0 = time.perf_counter()
        if section == "floor":
            floor(choice.threads, args.quick)
        elif section == "segment":
            segment(args.quick)
        elif section == "mse":
            time_to_mse(args.mse, args.quick, choice.threads)
        elif section == "predict":
            predict(args.quick)
            run_peers("predict", args.mse, args.quick, choice.threads)
        else:
            end_to_end(args.quick)
        threads.apply(choice.threads)  # a section's script may have changed it
        print(f"({section}: {time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
