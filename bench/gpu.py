"""Training and prediction windows/s of every registered neural model on a GPU, at
batch 32, 256 and 1,024.

    python bench/gpu.py [--batches 32 256 1024] [--windows 8192] [--models lstm segrnn]
                        [--device cuda] [--out bench/results/gpu.json]
    python bench/gpu.py --device cpu --windows 256 --batches 32   # a quick try on the CPU

The reference data of `throughput.py` (random, shaped like ETTh1 track MS: 7 columns, L 96,
H 24). Each model trains one epoch on `--windows` windows at each batch size, with its
default settings, `amp="auto"` (bf16 where the GPU supports it, else fp16) and the batch
size as given (`gpu_batch_size=None`, so the large-batch rule does not change it), then
predicts every window in batches of 256. Prints the device's name with the figures.
Exits with a message (code 2) when no CUDA GPU is present, unless `--device cpu`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import forecast  # noqa: E402, F401, I001  (sets OpenMP's wait policy before torch loads)
import torch  # noqa: E402
from throughput import reference_dataset, time_model  # noqa: E402

from forecast.models.registry import create_model, list_models  # noqa: E402
from forecast.models.torch_base import TorchForecaster  # noqa: E402
from forecast.threads import apply as apply_threads  # noqa: E402


def neural_models() -> list[str]:
    """The registered models that train with the torch loop."""
    layout = reference_dataset(1).layout
    return [n for n in list_models() if isinstance(create_model(n, layout), TorchForecaster)]


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's threads and OpenMP policy."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    choice = apply_threads("auto")
    return f"CPU, {choice.threads} threads, OpenMP {choice.policy}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    p.add_argument("--windows", type=int, default=8192, help="training windows per epoch")
    p.add_argument("--models", nargs="*", default=None, help="default: every neural model")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--out", default="bench/results/gpu.json")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU here (torch.cuda.is_available() is False); run this on a "
            "GPU machine, or try it on the CPU with --device cpu --windows 256 --batches 32",
            file=sys.stderr,
        )
        return 2
    name = device_name(args.device)
    ds = reference_dataset(args.windows)
    rows = []
    print(f"device: {name}; {args.windows} training windows, L 96 H 24, 7 columns")
    print(f"{'model':22s} {'batch':>6s} {'train win/s':>12s} {'predict win/s':>14s}")
    for model_name in args.models or neural_models():
        for batch in args.batches:
            model = create_model(
                model_name, ds.layout, epochs=1, batch_size=batch, gpu_batch_size=None,
                device=args.device, progress=False, patience=None,
            )  # fmt: skip
            train, predict, _ = time_model(model, ds)
            rows.append({"model": model_name, "batch": batch, "train": train, "predict": predict})
            print(f"{model_name:22s} {batch:6d} {train:12.0f} {predict:14.0f}", flush=True)
    out = {"device": name, "on_gpu": args.device == "cuda", "windows": args.windows, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
