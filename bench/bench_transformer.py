"""Training and prediction throughput of the transformer on CPU.

    python bench/bench_transformer.py [--threads 2] [--windows 1600] [--repeats 3]
                                      [--out bench/results/transformer_throughput.json]

Random data shaped like ETTh1 track MS: 7 input columns (1 target, 6 past covariates),
input 96, horizon 24, d_model 64, 4 heads, 2 encoder + 1 decoder layers, batch 32, the
same setup as `bench/bench_lstm.py`. Each variant is trained by the real loop
(`TorchForecaster.fit`, one epoch over `--windows` windows, no validation) and timed from
its history; prediction is timed over the same windows in batches of 256 (free-running,
as at test time). The variants run in `--repeats` interleaved rounds and each keeps its
best run (the median is beside it), since other processes on a shared machine only ever
make a run slower.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from throughput import BATCH, H, L, parser, reference_dataset, run_rounds, time_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.windows import WindowDataset  # noqa: E402
from forecast.models.transformer import TransformerForecaster  # noqa: E402

ARCH = {"d_model": 64, "n_heads": 4, "encoder_layers": 2, "decoder_layers": 1, "d_ff": 256}
# (variant, decoding, teacher forcing, attention dropout): 1.0 is one parallel pass, 0.5
# the two-pass scheduled sampling, 0.0 free-running step by step with the key/value
# cache; attention dropout None is the model's default (= dropout, 0.1).
VARIANTS = [
    ("autoregressive_tf1", "autoregressive", 1.0, None),
    ("autoregressive_tf1_attn_dropout0", "autoregressive", 1.0, 0.0),
    ("autoregressive_tf0.5", "autoregressive", 0.5, None),
    ("autoregressive_free", "autoregressive", 0.0, None),
    ("direct", "direct", 0.0, None),
    ("direct_attn_dropout0", "direct", 0.0, 0.0),
]


def _time_variant(
    ds: WindowDataset, decoding: str, tf: float, attention_dropout: float | None = None
) -> tuple[float, float]:
    config = TransformerForecaster.Config.from_params(
        **ARCH,
        attention_dropout=attention_dropout,
        decoding=decoding,
        batch_size=BATCH,
        epochs=1,
        teacher_forcing=tf,
        tf_schedule="constant",
        progress=False,
        device="cpu",
    )
    train, predict, _ = time_model(TransformerForecaster(ds.layout, config), ds)
    return train, predict


def main() -> None:
    args = parser(__doc__, "bench/results/transformer_throughput.json").parse_args()
    torch.set_num_threads(args.threads)
    ds = reference_dataset(args.windows)
    _time_variant(reference_dataset(BATCH * 4), "autoregressive", 1.0)  # warm-up
    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only]
    settings = {v[0]: v[1:] for v in chosen}
    timings = run_rounds(list(settings), lambda n: _time_variant(ds, *settings[n]), args.repeats)
    rows = []
    for name, decoding, tf, attention_dropout in chosen:
        runs = timings[name]
        train = [r[0] for r in runs]
        rows.append(
            {
                "variant": name,
                "decoding": decoding,
                "teacher_forcing": tf,
                "attention_dropout": attention_dropout,
                "train_windows_per_s": round(max(train), 1),
                "train_windows_per_s_median": round(float(np.median(train)), 1),
                "predict_windows_per_s": round(max(r[1] for r in runs), 1),
            }
        )
        print(f"{name}: {rows[-1]['train_windows_per_s']:.0f} windows/s", file=sys.stderr)
    print(
        f"threads={args.threads}  L={L} H={H} d_model={ARCH['d_model']} heads={ARCH['n_heads']} "
        f"layers={ARCH['encoder_layers']}+{ARCH['decoder_layers']} batch={BATCH} "
        f"7 input columns, {args.windows} windows/run, best of {args.repeats}"
    )
    print(pd.DataFrame(rows).to_string(index=False))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "setup": {
            "threads": args.threads,
            "input_length": L,
            "horizon": H,
            **ARCH,
            "batch_size": BATCH,
            "input_columns": 7,
            "windows_per_run": args.windows,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        },
        "results": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
