"""The default `lstm` training epoch against the bare-kernel floor of its decoding mode.

    python bench/bench_floor.py [--threads 1 2] [--repeats 5] [--windows 2048]
        [--track MS] [--models lstm lstm_bahdanau] [--data-path ../shared/data/ETTh1.csv]
        [--schedule] [--out bench/results/floor_ratio.json]

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
- `<model>:bare_read_floor`: the floor of the read decoder's own architecture, which does
  strictly more work than `floor`: the same bare LSTMs plus, in plain autograd, the
  attention's score of every decoder state against every encoder state (Luong dot, or
  Bahdanau's additive score over [B, H, L, A]), a lag prior added to it, the softmax over
  the input steps of every (window, read feature, step) [B, 2V, H, L] and the weighted
  sum of the values; its ratio to `floor` is the cost of that extra work.

With `--schedule`, each model is also fitted once with every default (validation on the
protocol's validation windows, early stopping, the lag-prior phase then content) and the
epochs of each phase are counted: the schedule's mean ratio weights each phase's ratio
by its epochs.

Each ratio is the median over rounds of (variant seconds) / (floor seconds) of the same
round: a slow spell of the shared machine hits both. Column `x own` is a content epoch
against its own architecture's bare floor, the same way. Threads, the OpenMP wait policy
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
    cfg = create_model(model, layout).config
    train = getattr(cfg, "train", cfg)  # training settings: flat, or in a `train` field
    return {"hidden_size": cfg.hidden_size, "batch_size": train.batch_size, "lr": train.lr}


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


class BareRead(BareDirect):
    """The floor of the read decoder's own architecture: `BareDirect`'s LSTMs, the
    attention's score of every decoder state against every encoder state (Luong dot or
    Bahdanau's additive score), a lag prior [2V, H, L] added to it, the softmax over the
    input steps of each (window, feature, step), the weighted sum of the values and a
    linear mix of the 2V reads; plain autograd, no maps."""

    def __init__(self, n_in: int, n_dec: int, hidden: int, n_out: int, n_read: int,
                 shape: tuple[int, int], additive: bool) -> None:  # fmt: skip
        super().__init__(n_in, n_dec, hidden, n_out)
        self.prior = nn.Parameter(torch.zeros(n_read, *shape))  # [2V, H, L]
        self.mix = nn.Linear(n_read, n_out)
        self.additive = None
        if additive:
            self.additive = nn.ModuleList(
                [nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden),
                 nn.Linear(hidden, 1, bias=False)]
            )  # fmt: skip

    def forward(self, x: torch.Tensor, dec_in: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        memory, state = self.encoder(x)
        s, _ = self.decoder(dec_in, state)  # [B, H, D]
        if self.additive is None:
            c = torch.bmm(s, memory.transpose(1, 2)) / s.shape[-1] ** 0.5  # [B, H, L]
        else:
            w_s, w_h, v = self.additive
            c = v(torch.tanh(w_s(s)[:, :, None] + w_h(memory)[:, None])).squeeze(-1)
        a = torch.softmax(self.prior + c[:, None], dim=-1)  # [B, 2V, H, L]
        return self.mix(torch.einsum("bvhl,blv->bhv", a, values))


def time_floor(
    ds: WindowDataset, hidden: int, batch_size: int, lr: float, read: str | None = None
) -> float:
    """Seconds of one epoch of `BareDirect` (or, with `read` = 'luong_dot' or
    'bahdanau', of `BareRead`) with fused Adam over `ds`."""
    b = ds.batch(np.arange(len(ds)))
    x = torch.cat([b["past_target"], b["past_covariates"], b["past_known"]], -1).contiguous()
    H, L = ds.layout.horizon, ds.layout.input_length
    steps = torch.eye(H).expand(len(ds), H, H)
    dec_in = torch.cat([b["future_known"], steps], -1).contiguous()
    y = b["future_target"].contiguous()
    past = b["past_target"]
    values = torch.cat([past - past[:, -1:], b["past_covariates"]], -1)
    values = torch.cat([values, -values], -1).contiguous()  # [N, L, 2V]
    sizes = (x.shape[-1], dec_in.shape[-1], hidden, y.shape[-1])
    if read is None:
        net: nn.Module = BareDirect(*sizes)
    else:
        net = BareRead(*sizes, values.shape[-1], (H, L), additive=read == "bahdanau")
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    start = time.perf_counter()
    for idx in torch.randperm(len(ds)).split(batch_size):
        args = (x[idx], dec_in[idx]) if read is None else (x[idx], dec_in[idx], values[idx])
        loss = nn.functional.mse_loss(net(*args), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def _median_ratio(times: list[float], reference: list[float]) -> float:
    """Median over rounds of a variant's seconds over the reference's of the same round."""
    return statistics.median(t / r for t, r in zip(times, reference, strict=True))


def _schedule(
    models: list[str], ds: WindowDataset, val: WindowDataset, results: list[dict]
) -> dict:
    """Fit each model once with every default and count the epochs of each phase; the
    schedule's ratio to the floor weights the phases' measured ratios (first thread
    count) by those epochs."""
    threads = results[0]["threads"]
    ratio = {r["variant"]: r["x_floor_median"] for r in results if r["threads"] == threads}
    out = {}
    for m in models:
        model = create_model(m, ds.layout, progress=False, device="cpu").fit(ds, val)
        counts = model.history_["phase"].value_counts().to_dict()
        n1, n2 = int(counts.get(1, 0)), int(counts.get(2, 0))
        mean = (n1 * ratio[f"{m}:lag_prior"] + n2 * ratio[f"{m}:content"]) / max(n1 + n2, 1)
        out[m] = {
            "lag_prior_epochs": n1,
            "content_epochs": n2,
            "best_epoch": model.best_epoch_,
            "x_floor_schedule_mean": round(mean, 3),
        }
        print(
            f"{m}, default schedule ({len(val)} validation windows): {n1} lag-prior epochs, "
            f"{n2} content epochs, best epoch {model.best_epoch_}; epochs' mean "
            f"{mean:.2f}x the floor (threads {threads})"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--windows", type=int, default=2048, help="training windows (0: all)")
    p.add_argument("--track", default="MS", choices=["U", "MS", "M"])
    p.add_argument("--models", nargs="+", default=["lstm", "lstm_bahdanau"])
    p.add_argument("--data-path", default=str(DEFAULT_ETT))
    p.add_argument("--schedule", action="store_true", help="count each phase's epochs")
    p.add_argument("--out", default="bench/results/floor_ratio.json")
    args = p.parse_args()

    if not Path(args.data_path).is_file():
        raise SystemExit(f"error: ETTh1 not found at {args.data_path}; pass --data-path")
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
        att = create_model(m, ds.layout).config.attention
        timers[f"{m}:bare_read_floor"] = lambda att=att: time_floor(ds, hidden, batch_size, lr, att)
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
        head = f"{'variant':<30} {'s/epoch':>8} {'windows/s':>10} {'x floor':>8} {'x own':>6}"
        print(f"{head}  check (x floor)")
        for name, times in runs.items():
            ratio = _median_ratio(times, runs["floor"])
            own = None
            if name.endswith(":content"):  # against its own architecture's floor
                own = _median_ratio(times, runs[name.replace(":content", ":bare_read_floor")])
            med = statistics.median(times)
            check = ""
            if name.endswith((":lag_prior", ":content")):
                check = f"<= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}"
            own_text = f"{own:6.2f}" if own is not None else " " * 6
            print(f"{name:<30} {med:8.3f} {len(ds) / med:10.0f} {ratio:8.2f} {own_text}  {check}")
            results.append(
                {
                    "threads": threads,
                    "variant": name,
                    "seconds_median": round(med, 4),
                    "seconds": [round(t, 4) for t in times],
                    "windows_per_s": round(len(ds) / med, 1),
                    "x_floor_median": round(ratio, 3),
                    "x_own_floor_median": None if own is None else round(own, 3),
                    "load_before": load_before,
                    "load_after": load_after,
                }
            )
    schedule = _schedule(args.models, ds, data.val, results) if args.schedule else None
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
    result = {"setup": setup, "results": results, "schedule": schedule}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
