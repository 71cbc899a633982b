"""Time and peak memory of the ridge `linear` baseline's fit on a registered dataset.

    python bench/linear_fit.py --dataset weather --data-path ../shared/data/weather.csv \
        --targets all --input-length 336 --horizon 96

Prints the fit time, the test MSE, the number of test windows, the process's peak RSS, and
the thread settings it ran under.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import threadpoolctl
import torch


def main() -> None:
    """Parse the options, fit, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="weather")
    p.add_argument("--data-path", default="../shared/data/weather.csv")
    p.add_argument("--targets", nargs="+", default=["all"])
    p.add_argument("--input-length", type=int, default=336)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)
    from forecast.config import config_from_dict
    from forecast.data.source import load_source, make_bundle
    from forecast.evaluate import predict_dataset, score
    from forecast.models.registry import create_model

    data = {
        "dataset": args.dataset,
        "data_path": args.data_path,
        "targets": args.targets,
        "input_length": args.input_length,
        "horizon": args.horizon,
    }
    cfg = config_from_dict({"data": data, "models": ["linear"]})
    df, roles, split, _ = load_source(cfg.data)
    bundle = make_bundle(cfg, df, roles, split)
    model = create_model("linear", bundle.layout)
    t0 = time.perf_counter()
    model.fit(bundle.train)
    fit = time.perf_counter() - t0
    mse = score(predict_dataset(model, bundle.test), bundle, bundle.test)["mse"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"linear fit {fit:.1f} s, test mse {mse:.4f}, {len(bundle.test)} test windows, "
        f"peak RSS {rss:.2f} GB; threads {args.threads}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
