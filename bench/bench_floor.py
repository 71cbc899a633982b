"""The default `lstm` training epoch against the bare-kernel floor of its decoding mode.

    python bench/bench_floor.py [--threads 1 2] [--repeats 5] [--windows 2048]
        [--track MS] [--models lstm lstm_bahdanau] [--data-path ../shared/data/ETTh1.csv]
        [--out bench/results/floor_ratio.json]

ETTh1 (the literature's protocol, track MS by default: OT out, 6 past covariates in),
L=96, H=24, the first `--windows` training windows (0: all 8,521), every model at its
registry defaults (only `epochs=1`, no validation, so the loop's epoch clock,
`history_['seconds']`, times training alone). The default `lstm` decodes directly (one
decoder call, no teacher forcing), so the floor of every one of its epochs is the
one-call floor. Variants, run interleaved in `--repeats` rounds per thread count:

- `<model>:lag_prior`: an epoch of the read decoder's first phase (the map is the learned
  lag prior alone; no LSTM runs), as in the default schedule's first epochs.
- `<model>:content`: an epoch of its second phase (`attention_warmup=0`): encoder and
  decoder LSTMs, the attention's content scores and the read.
- `floor`: the bare-kernel floor of direct decoding at the same hidden size and batch:
  an `nn.LSTM` encoder over the window, one `nn.LSTM` decoder call over the horizon (its
  input the known covariates and a one-hot of the step, as ours), a linear head, MSE,
  fused Adam; batches sliced from pre-gathered tensors.
- `<model>:read`: the read decoder's extra work alone, which the floor does not do: the
  attention scores, the per-feature maps over (step, input) [B, 2V, H, L], the read and
  the maps, forward and backward, on fixed LSTM states (`ReadDecoder._steps`), as many
  batches as an epoch.

Each ratio is the median over rounds of (variant seconds) / (floor seconds) of the same
round: a slow spell of the shared machine hits both. Threads, the OpenMP wait policy
(OMP_WAIT_POLICY, GOMP_SPINCOUNT) and the load averages are printed beside the figures
and written to the JSON. Issue #16's check: every default-schedule epoch <= 1.3x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.protocols import ett_bundle  # noqa: E402
from forecast.data.windows import WindowDataset  # noqa: E402

DEFAULT_ETT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
TARGET = 1.3
PHASES = {"lag_prior": {"attention_warmup": 10_000}, "content": {"attention_warmup": 0}}


def _settings(model: str, layout) -> dict:
    """The registry defaults the benchmark keeps (hidden size, batch, learning rate)."""
    probe = create_model(model, layout)
    return {k: getattr(probe.config, k) for k in ("hidden_size", "batch_size", "lr")}


def time_ours(model: str, phase: str, ds: WindowDataset) -> float:
    """Seconds of one training epoch of `model` in `phase`, by the loop's own clock."""
    params = {"epochs": 1, "patience": None, "progress": False, "device": "cpu"}
    forecaster = create_model(model, ds.layout, **params, **PHASES[phase])
    forecaster.fit(ds)
    return float(forecaster.history_["seconds"].iloc[0])


class BareDirect(nn.Module):
    """The floor of direct decoding: LSTM encoder, one decoder call, linear head."""

    def __init__(self, n_in: int, n_dec: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.encoder = nn.LSTM(n_in, hidden, batch_first=True)
        self.decoder = nn.LSTM(n_dec, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, dec_in: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(x)
        s, _ = self.decoder(dec_in, state)
        return self.head(s)


def time_floor(ds: WindowDataset, hidden: int, batch_size: int, lr: float) -> float:
    """Seconds of one epoch of `BareDirect` with fused Adam over `ds`."""
    b = ds.batch(np.arange(len(ds)))
    x = torch.cat([b["past_target"], b["past_covariates"], b["past_known"]], -1).contiguous()
    H = ds.layout.horizon
    steps = torch.eye(H).expand(len(ds), H, H)
    dec_in = torch.cat([b["future_known"], steps], -1).contiguous()
    y = b["future_target"].contiguous()
    net = BareDirect(x.shape[-1], dec_in.shape[-1], hidden, y.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    start = time.perf_counter()
    for idx in torch.randperm(len(ds)).split(batch_size):
        loss = nn.functional.mse_loss(net(x[idx], dec_in[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def time_read(model: str, ds: WindowDataset) -> float:
    """Seconds of the read decoder's read (`_steps`), forward and backward, for an
    epoch's batches of `model` in its content phase, on fixed LSTM states."""
    forecaster = create_model(model, ds.layout, progress=False, device="cpu", attention_warmup=0)
    forecaster.network = net = forecaster.make_network()
    dec = net.decoder
    cfg = forecaster.config
    batch = ds.batch(np.arange(min(len(ds), cfg.batch_size)))
    raw = batch["past_target"]
    inputs = torch.cat([raw, batch["past_covariates"]], dim=-1)
    with torch.no_grad():
        x = torch.cat([net.revin.normalize(raw), batch["past_covariates"], batch["past_known"]], -1)
        memory, state, _ = net.encoder(x)
        q, _ = dec.lstm(torch.cat([batch["future_known"], dec.steps.expand(len(x), -1, -1)], -1))
    past = inputs[..., : dec.n_targets]
    values = torch.cat([past - past[:, -1:], inputs[..., dec.n_targets :]], dim=-1)
    values = torch.cat([values, -values], dim=-1)
    memory.requires_grad_(True)
    q.requires_grad_(True)
    n_batches = -(-len(ds) // cfg.batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        keys = dec.attention.prepare_keys(dec.key_state(memory) + dec.key_input(x))
        y, _, _ = dec._steps(q + dec.step_query, keys, values, 0, maps=False)
        y.sum().backward()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--windows", type=int, default=2048, help="training windows (0: all)")
    p.add_argument("--track", default="MS", choices=["U", "MS", "M"])
    p.add_argument("--models", nargs="+", default=["lstm", "lstm_bahdanau"])
    p.add_argument("--data-path", default=str(DEFAULT_ETT))
    p.add_argument("--out", default="bench/results/floor_ratio.json")
    args = p.parse_args()

    data = ett_bundle(args.data_path, args.track, 96, 24)
    ds = data.train
    if args.windows:
        ds = ds.subset(np.arange(min(args.windows, len(ds))))
    settings = {m: _settings(m, ds.layout) for m in args.models}
    floors = {(s["hidden_size"], s["batch_size"], s["lr"]) for s in settings.values()}
    if len(floors) != 1:
        raise SystemExit(f"error: the models' defaults differ ({settings}); run them apart")
    hidden, batch_size, lr = floors.pop()
    timers = {"floor": lambda: time_floor(ds, hidden, batch_size, lr)}
    for m in args.models:
        for phase in PHASES:
            timers[f"{m}:{phase}"] = lambda m=m, phase=phase: time_ours(m, phase, ds)
        timers[f"{m}:read"] = lambda m=m: time_read(m, ds)
    policy = {
        k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    }
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for timer in timers.values():  # warm-up: oneDNN primitives, allocator
            timer()
        load_before = os.getloadavg()
        runs: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(args.repeats):
            for name, timer in timers.items():
                runs[name].append(timer())
        load_after = os.getloadavg()
        print(
            f"\nthreads {torch.get_num_threads()}, {policy}, load {load_before[0]:.2f} -> "
            f"{load_after[0]:.2f}; ETTh1 {args.track} L96 H24, hidden {hidden}, batch "
            f"{batch_size}, {len(ds)} windows/epoch, median of {args.repeats} interleaved rounds"
        )
        print(f"{'variant':<28} {'s/epoch':>8} {'windows/s':>10} {'x floor':>8}  check")
        for name, times in runs.items():
            ratio = statistics.median(t / f for t, f in zip(times, runs["floor"], strict=True))
            med = statistics.median(times)
            check = ""
            if name.endswith((":lag_prior", ":content")):
                check = f"<= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}"
            print(f"{name:<28} {med:8.3f} {len(ds) / med:10.0f} {ratio:8.2f}  {check}")
            results.append(
                {
                    "threads": threads,
                    "variant": name,
                    "seconds_median": round(med, 4),
                    "seconds": [round(t, 4) for t in times],
                    "windows_per_s": round(len(ds) / med, 1),
                    "x_floor_median": round(ratio, 3),
                    "load_before": load_before,
                    "load_after": load_after,
                }
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = {
        "track": args.track,
        "input_length": 96,
        "horizon": 24,
        "hidden_size": hidden,
        "batch_size": batch_size,
        "windows": len(ds),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        **{k.lower(): v for k, v in policy.items()},
    }
    out.write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
