"""Peak memory of transformer prediction, with and without attention maps.

    python bench/transformer_memory.py               # batch 1,024, L = 336, H = 96
    python bench/transformer_memory.py --windows 256
    python bench/transformer_memory.py --json bench/results/transformer_memory.json

Each case runs in a fresh child process (so peaks do not mix) on a one-layer
(encoder and decoder), d_model-32 transformer with untrained weights (memory does not
depend on them) over `--windows` test windows of a generated 7-column frame:

- `before`: what every forward did before maps were optional: `predict_batch` with
  the maps, all windows in one batch;
- `maps on request`: `predict_batch` with the maps, the batch capped by the model's
  `max_batch` (what the interpretation code asks for);
- `after`: `predict_dataset` as a run calls it: no maps, batch capped by `max_batch`.

Prints the peak resident memory (ru_maxrss) of each child above its footprint just
before predicting, and the threads used.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast.data.frame import ColumnRoles  # noqa: E402
from forecast.data.prepare import prepare_data  # noqa: E402
from forecast.data.split import SplitSpec  # noqa: E402
from forecast.evaluate import predict_dataset  # noqa: E402
from forecast.models.registry import create_model  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _case(case: str, windows: int, threads: int, out: multiprocessing.Queue) -> None:
    import pandas as pd

    torch.set_num_threads(threads)
    L, H, rows = 336, 96, 4 * (windows + 432)
    rng = np.random.default_rng(0)
    cols = {f"c{i}": np.cumsum(rng.normal(size=rows)) for i in range(7)}
    df = pd.DataFrame({"date": pd.date_range("2020", periods=rows, freq="15min"), **cols})
    roles = ColumnRoles(tuple(cols), (), (), calendar=False, time_column="date")
    split = SplitSpec("fractions", fractions=(0.5, 0.2, 0.3))
    bundle = prepare_data(df, roles, input_length=L, horizon=H, split=split, stride=1)
    ds = bundle.test.subset(np.arange(windows))
    params = dict(d_model=32, n_heads=4, encoder_layers=1, decoder_layers=1, d_ff=128)
    model = create_model("transformer", bundle.layout, **params, progress=False)
    model.network = model.build_network()  # untrained weights: same memory
    batch = next(ds.iter_batches(windows))
    attention = case != "after"
    limit = model.max_batch(attention)
    base = _peak_mb()
    if case == "before":
        model.predict_batch(batch, attention=True)
        size = windows
    elif case == "maps on request":
        size = min(windows, limit)
        for lo in range(0, windows, size):
            model.predict_batch(ds.subset(np.arange(lo, min(lo + size, windows))).batch(
                torch.arange(min(size, windows - lo))), attention=True)  # fmt: skip
    else:
        predict_dataset(model, ds, batch_size=windows)
        size = min(windows, limit)
    out.put({"case": case, "batch": size, "peak_above_start_mb": round(_peak_mb() - base)})


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    results = []
    for case in ("before", "maps on request", "after"):
        q = ctx.Queue()
        proc = ctx.Process(target=_case, args=(case, args.windows, args.threads, q))
        proc.start()
        results.append(q.get())
        proc.join()
    for r in results:
        r["threads"] = args.threads
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
