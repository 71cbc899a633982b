"""The bare-LSTM training step on a quiet machine and under a background load, with
`threads="auto"` against an explicit setting.

    python bench/threads.py [--steps 30] [--budget 20] [--load 2] [--explore]
                            [--out bench/results/threads.json]

The step: `nn.LSTM` (7 inputs, hidden 64) over [32, 96, 7] windows, a linear head to 24
outputs, MSE, backward and a fused Adam update. Each setting runs in a fresh process
(OpenMP reads its wait policy once, when torch loads it), first on the machine as it is
("quiet"), then beside `--load` busy processes this script spawns ("loaded"). A setting
that crawls stops after `--budget` seconds and reports the median of the steps it did.

Settings: `auto` (what `forecast` picks: `forecast.threads`), `2 threads busy-wait`
(`OMP_WAIT_POLICY=ACTIVE`, the slow regime under load). `--explore` adds the matrix the
auto policy was chosen from: 1 and 2 threads x the libgomp default, ACTIVE, PASSIVE and
`GOMP_SPINCOUNT` values. The check of issue 16: with auto, loaded within 2x of quiet.
Other work on the machine makes 'quiet' approximate: the load average is printed with
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = [("auto", "auto", {}), ("2 threads busy-wait", "2", {"OMP_WAIT_POLICY": "ACTIVE"})]
EXPLORE = [
    (f"{t} thread(s) {label}", str(t), env)
    for t in (1, 2)
    for label, env in [
        ("libgomp default", {"FORECAST_OPENMP": "off"}),
        ("ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}),
        ("PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
        ("spincount 10k", {"GOMP_SPINCOUNT": "10000"}),
        ("spincount 100k", {"GOMP_SPINCOUNT": "100000"}),
    ]
]
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "FORECAST_OPENMP")


def step_times(threads: str, steps: int, budget: float) -> dict:
    """Time `steps` bare-LSTM training steps in this process (after 3 warm-up steps),
    stopping after `budget` seconds: the median step in ms, the steps done, and the
    threads and policy in effect (`forecast.threads.apply`)."""
    sys.path.insert(0, str(ROOT))
    import forecast  # noqa: F401  (sets the OpenMP policy, when auto, before torch loads)
    from forecast.threads import apply

    choice = apply("auto" if threads == "auto" else int(threads))
    import torch
    from torch import nn

    torch.manual_seed(0)
    lstm, head = nn.LSTM(7, 64, batch_first=True), nn.Linear(64, 24)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    x, y = torch.randn(32, 96, 7), torch.randn(32, 24)

    def step() -> None:
        out, _ = lstm(x)
        loss = nn.functional.mse_loss(head(out[:, -1]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times, end = [], time.perf_counter() + budget
    while len(times) < steps and time.perf_counter() < end:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "ms": 1000 * times[len(times) // 2],
        "steps": len(times),
        "threads": torch.get_num_threads(),
        "policy": choice.policy,
        "cores": choice.cores,
        "load_seen": choice.load,
        **{k.lower(): os.environ.get(k) for k in OMP_KEYS},
    }


def measure(threads: str, env: dict, args: argparse.Namespace) -> dict:
    """One setting in a fresh process with `env` added (the OpenMP variables of this
    process removed first, so each setting starts from the same place)."""
    child_env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    child_env.update(env)
    cmd = [sys.executable, __file__, "--child", threads, "--steps", str(args.steps)]
    cmd += ["--budget", str(args.budget)]
    out = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "loadavg": os.getloadavg()[0]}


def busy(n: int) -> list[subprocess.Popen]:
    """`n` processes that spin forever (the background load)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    p.add_argument("--budget", type=float, default=20.0, help="seconds per setting at most")
    p.add_argument("--load", type=int, default=2, help="busy processes for 'loaded'")
    p.add_argument("--explore", action="store_true", help="also the policy matrix")
    p.add_argument("--out", default="bench/results/threads.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(step_times(args.child, args.steps, args.budget)))
        return
    settings = MAIN + (EXPLORE if args.explore else [])
    rows = []
    for condition in ("quiet", "loaded"):
        load = busy(args.load) if condition == "loaded" else []
        try:
            if load:
                time.sleep(2.0)  # let the load average see them
            for label, threads, env in settings:
                row = {"setting": label, "condition": condition, **measure(threads, env, args)}
                rows.append(row)
                print(
                    f"{condition:6s} {label:28s} {row['ms']:9.1f} ms/step ({row['steps']} steps)"
                    f"  threads={row['threads']} policy={row['policy']}"
                    f"  loadavg={row['loadavg']:.2f}",
                    flush=True,
                )
        finally:
            for proc in load:
                proc.kill()
                proc.wait()
    print("\nloaded / quiet (issue 16: auto within 2x):")
    summary = {}
    for label, _, _ in settings:
        ms = {r["condition"]: r["ms"] for r in rows if r["setting"] == label}
        summary[label] = ms["loaded"] / ms["quiet"]
        print(f"  {label:28s} {ms['quiet']:8.1f} -> {ms['loaded']:8.1f} ms  {summary[label]:6.1f}x")
    result = {"rows": rows, "ratios": summary, "load_processes": args.load}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
