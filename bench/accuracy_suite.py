"""Accuracy on a registered dataset (ETTh1 by default) for every model, next to the
published numbers (DESIGN.md).

    python bench/accuracy_suite.py                       # the full grid (hours on 2 cores)
    python bench/accuracy_suite.py --dataset weather --tracks M --inputs 336 \
        --horizons 96 --models naive nlinear --seeds 0    # weather, 10,444 test windows
    python bench/accuracy_suite.py --tracks U --inputs 336 --horizons 96 \\
        --models nlinear transformer_direct --seeds 0 1 2
    python bench/accuracy_suite.py --quick               # a smoke pass: 2 epochs, 1 seed
    python bench/accuracy_suite.py --set transformer_direct.lr=5e-4 --epochs 20
    python bench/accuracy_suite.py --model-defaults --tracks M --inputs 336 --horizons 96 \
        --models segrnn --seeds 0 1 2       # each model's own epochs, patience, batch

Grid: tracks U and MS (and M on request) x input 96, 336 x horizon 24, 96 x every
registered model x seeds 0 1 2, on the dataset's own protocol from its registry entry
(`dataset_bundle`: the `split` of datasets/<name>.toml, i.e. the Informer 12/4/4-month
borders for ETTh*, the same x4 for the 15-minute ETTm* files, 70/10/20 row fractions for
weather; its cleaning rules; z-score on training rows; every test window at stride 1).
Normalised test MSE and MAE. Baselines are deterministic, so they run on the first seed
only. `--data-path` defaults to ../shared/data/<the dataset's file name>.

Resumable: every finished cell (track, L, H, model, seed, settings) is appended as one
JSON line to `<out>.jsonl` and skipped on the next run with the same settings; the
summary (mean and std over seeds, the references, the issue's targets) is rewritten to
`<out>.json` from every line on file. `--quick` writes to its own files, and each dataset
other than ETTh1 to `accuracy_suite_<name>`.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast import create_model  # noqa: E402
from forecast.data.protocols import dataset_bundle  # noqa: E402
from forecast.data.registry import get_dataset_spec  # noqa: E402
from forecast.evaluate import predict_dataset, score  # noqa: E402
from forecast.models.registry import get_entry, list_models  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
# (track, L or None for any, H) -> [(published model, MSE, MAE or None)], from DESIGN.md.
ETTH1_REFERENCES: dict[tuple[str, int | None, int], list[tuple[str, float, float | None]]] = {
    ("M", None, 96): [("repeat last value", 1.295, 0.713)],
    ("M", 336, 96): [("DLinear", 0.375, 0.399), ("PatchTST/42", 0.375, 0.399)],
    ("M", 720, 96): [("SegRNN", 0.351, 0.392)],
    ("M", 96, 96): [("iTransformer", 0.386, 0.405), ("Informer", 0.865, 0.713)],
    ("U", 336, 96): [
        ("NLinear", 0.053, 0.177),
        ("DLinear", 0.056, 0.180),
        ("Informer", 0.193, 0.377),
    ],
    ("U", None, 24): [
        ("Informer (own paper)", 0.098, 0.247),
        ("LSTM + attention (Informer paper)", 0.114, 0.272),
    ],
}
# Per dataset; the anchors beyond ETTh1 are DESIGN.md's (LTSF-Linear paper, MSE only).
REFERENCES: dict[str, dict[tuple[str, int | None, int], list[tuple[str, float, float | None]]]] = {
    "ETTh1": ETTH1_REFERENCES,
    "ETTm1": {
        ("M", 336, 96): [("DLinear", 0.299, None), ("NLinear", 0.306, None)],
        ("U", 336, 96): [("NLinear", 0.026, None)],
    },
    "ETTm2": {
        ("M", 336, 96): [("DLinear", 0.167, None), ("NLinear", 0.167, None)],
        ("U", 336, 96): [("NLinear", 0.063, None)],
    },
    "weather": {
        ("M", None, 96): [("repeat last value", 0.259, None)],
        ("M", 336, 96): [("DLinear", 0.176, None), ("NLinear", 0.182, None)],
    },
}
# The accuracy targets, per dataset:
# (track, L, H, which of our models, reference MSE, tolerance, reference name)
TARGETS: dict[str, list[tuple[str, int, int, str, float, float, str]]] = {
    "ETTh1": [
        ("U", 336, 96, "best neural", 0.053, 0.05, "NLinear (published)"),
        ("M", 336, 96, "best neural", 0.375, 0.05, "DLinear (published)"),
        ("M", 336, 96, "best any", 0.375, 0.05, "DLinear (published)"),
    ],
    "weather": [("M", 336, 96, "nlinear", 0.182, 0.02, "NLinear (published)")],
}
# Training settings shared by every neural model in the suite (TrainConfig fields, passed flat).
NEURAL_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "patience": 3,
    "batch_size": 32,
    "max_val_windows": 1000,  # validation (early stopping) on 1,000 evenly spaced windows
    "progress": False,
    "device": "cpu",
}
QUICK: dict[str, Any] = {"epochs": 2, "patience": None, "max_train_windows": 2048}


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """`MODEL.PARAM=VALUE` strings -> {model: {param: value}}; values as Python literals,
    bare words as strings; `all.PARAM` applies to every neural model."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        model, dot, param = key.partition(".")
        if not sep or not dot or not model or not param:
            raise ValueError(f"--set expects MODEL.PARAM=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(model, {})[param] = value
    return out


def model_params(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The parameters one cell's model is built with (suite defaults, --quick, --set)."""
    sets = parse_sets(args.set)
    if get_entry(name).kind != "neural":
        return dict(sets.get(name, {}))
    if args.model_defaults:  # the model's own training settings
        params = {"progress": False, "device": "cpu", "seed": seed}
    else:
        params = {**NEURAL_DEFAULTS, "epochs": args.epochs, "seed": seed}
    if args.quick:
        params.update(QUICK)
    params.update(sets.get("all", {}))
    params.update(sets.get(name, {}))
    return params


def cell_key(
    track: str, L: int, H: int, name: str, seed: int, params: dict[str, Any], dataset: str = "ETTh1"
) -> str:
    """Identity of a result line: the dataset (omitted for ETTh1, as in older lines), the
    cell and a hash of its settings (so changed settings run again instead of being
    skipped)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    prefix = "" if dataset == "ETTh1" else f"{dataset}|"
    return f"{prefix}{track}|{L}|{H}|{name}|{seed}|{digest}"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every result line on file (a half-written last line from a crash is ignored)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def run_cell(
    data: Any,
    track: str,
    L: int,
    H: int,
    name: str,
    seed: int,
    params: dict[str, Any],
    dataset: str = "ETTh1",
) -> dict[str, Any]:
    """Fit one model on one grid cell and score it on every test window."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = create_model(name, data.layout, **params)
    model.fit(data.train, data.val)
    fit_s = time.perf_counter() - start
    result = score(predict_dataset(model, data.test), data, data.test)
    history = getattr(model, "history_", None)
    return {
        "key": cell_key(track, L, H, name, seed, params, dataset),
        "dataset": dataset,
        "track": track,
        "L": L,
        "H": H,
        "model": name,
        "kind": get_entry(name).kind,
        "seed": seed,
        "mse": result["mse"],
        "mae": result["mae"],
        "fit_seconds": round(fit_s, 1),
        "epochs_run": int(len(history)) if history is not None else None,
        "best_epoch": getattr(model, "best_epoch_", None),
        "test_windows": len(data.test),
        "params": params,
        "load": round(os.getloadavg()[0], 2),
    }


def summarise(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std of MSE / MAE over seeds per (track, L, H, model)."""
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    g = df.groupby(["track", "L", "H", "model", "kind"])
    out = g.agg(
        mse=("mse", "mean"),
        mse_std=("mse", "std"),
        mae=("mae", "mean"),
        mae_std=("mae", "std"),
        seeds=("seed", "nunique"),
        fit_s=("fit_seconds", "mean"),
    )
    return out.reset_index().sort_values(["track", "L", "H", "mse"])


def references(
    track: str, L: int, H: int, dataset: str = "ETTh1"
) -> list[tuple[str, float, float | None]]:
    """Published numbers that apply to a cell (exact L, or any L)."""
    refs = REFERENCES.get(dataset, {})
    return refs.get((track, L, H), []) + refs.get((track, None, H), [])


def check_targets(summary: pd.DataFrame, dataset: str = "ETTh1") -> list[dict[str, Any]]:
    """The issue's targets against the summary (only where the cell was run)."""
    out = []
    for track, L, H, which, ref, tol, ref_name in TARGETS.get(dataset, []):
        cell = summary[(summary.track == track) & (summary.L == L) & (summary.H == H)]
        if which == "best neural":
            cell = cell[cell.kind == "neural"]
        elif which != "best any":
            cell = cell[cell.model == which]
        if cell.empty:
            continue
        best = cell.sort_values("mse").iloc[0]
        gap = best.mse / ref - 1.0
        out.append(
            {
                "cell": f"{track} L={L} H={H}",
                "ours": f"{which}: {best.model}",
                "mse": round(float(best.mse), 4),
                "reference": f"{ref_name} {ref}",
                "gap": f"{gap:+.1%}",
                "target": f"<= +{tol:.0%}",
                "met": "yes" if gap <= tol else "NO",
            }
        )
    return out


def print_summary(summary: pd.DataFrame, dataset: str = "ETTh1") -> None:
    """Per cell: our models (mean +- std over seeds) then the published numbers."""
    for (track, L, H), cell in summary.groupby(["track", "L", "H"], sort=True):
        print(f"\n{dataset} track {track}, input {L}, horizon {H} (normalised test MSE / MAE)")
        lines = []
        for r in cell.itertuples():
            std = f" +- {r.mse_std:.4f}" if r.seeds > 1 else ""
            lines.append(
                (
                    f"{r.model} ({r.kind}, {r.seeds} seed)",
                    f"{r.mse:.4f}{std}",
                    f"{r.mae:.4f}",
                    f"{r.fit_s:.0f}",
                )
            )
        for name, mse, mae in references(track, int(L), int(H), dataset):
            mae_text = "-" if mae is None else f"{mae:.3f}"
            lines.append((f"[published] {name}", f"{mse:.3f}", mae_text, ""))
        print(pd.DataFrame(lines, columns=["model", "mse", "mae", "fit s"]).to_string(index=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="ETTh1", help="a registered dataset (its protocol)")
    p.add_argument("--data-path", type=Path, default=None, help="default: shared/data/<file>")
    p.add_argument("--tracks", nargs="+", default=["U", "MS"], choices=["U", "MS", "M"])
    p.add_argument("--inputs", nargs="+", type=int, default=[96, 336])
    p.add_argument("--horizons", nargs="+", type=int, default=[24, 96])
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=NEURAL_DEFAULTS["epochs"])
    p.add_argument("--set", action="append", default=[], metavar="MODEL.PARAM=VALUE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="2 epochs on 2,048 windows, 1 seed")
    p.add_argument(
        "--model-defaults",
        action="store_true",
        help="train neural models with their own defaults (epochs, patience, batch, full "
        "validation set) instead of the suite's shared settings (--epochs ignored)",
    )
    p.add_argument("--rerun", action="store_true", help="run cells already on file again")
    p.add_argument("--summary-only", action="store_true", help="print what is on file")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines from the loop")
    p.add_argument("--out", type=Path, default=None, help="default: results/accuracy_suite[_NAME]")
    args = p.parse_args()
    spec = get_dataset_spec(args.dataset)
    dataset = spec.name
    data_path = args.data_path or DATA_DIR / spec.filename
    if args.out is None:
        suffix = "" if dataset == "ETTh1" else f"_{dataset}"
        args.out = RESULTS / f"accuracy_suite{suffix}"
    if not args.quiet:  # the training loop logs one line per epoch: progress of long cells
        logging.basicConfig(format="  %(message)s")
        logging.getLogger("forecast.training").setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    out = args.out.with_name(args.out.name + "_quick") if args.quick else args.out
    seeds = args.seeds[:1] if args.quick else args.seeds
    models = args.models or list_models()
    for name in models:
        get_entry(name)  # unknown names fail before any training
    lines_path, summary_path = out.with_suffix(".jsonl"), out.with_suffix(".json")
    lines_path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in read_lines(lines_path)}
    frame = None if args.summary_only else pd.read_csv(data_path, encoding_errors="replace")
    for track in [] if args.summary_only else args.tracks:
        for L in args.inputs:
            for H in args.horizons:
                data = None
                for name in models:
                    kind = get_entry(name).kind
                    for seed in seeds if kind == "neural" else seeds[:1]:
                        params = model_params(name, seed, args)
                        key = cell_key(track, L, H, name, seed, params, dataset)
                        if key in done and not args.rerun:
                            continue
                        data = data or dataset_bundle(spec, frame, track, L, H)
                        row = run_cell(data, track, L, H, name, seed, params, dataset)
                        with lines_path.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        done.add(key)
                        print(
                            f"{track} L={L} H={H} {name} seed {seed}: mse {row['mse']:.4f} "
                            f"mae {row['mae']:.4f} ({row['fit_seconds']:.0f} s, "
                            f"load {row['load']:.1f})",
                            flush=True,
                        )
    # The summary keeps the newest line per cell and seed (settings may have changed).
    latest: dict[tuple, dict[str, Any]] = {}
    for r in read_lines(lines_path):
        if r.get("dataset", "ETTh1") == dataset:
            latest[(r["track"], r["L"], r["H"], r["model"], r["seed"])] = r
    summary = summarise(list(latest.values()))
    if summary.empty:
        print(f"no results on file in {lines_path}")
        return
    print_summary(summary, dataset)
    targets = check_targets(summary, dataset)
    if targets:
        print("\nissue targets (best = lowest mean test MSE over seeds, chosen on test)")
        print(pd.DataFrame(targets).to_string(index=False))
    payload = {
        "dataset": dataset,
        "protocol": f"{dataset}, split {spec.split} {spec.ratios or ''} (datasets/"
        f"{spec.name}.toml), z-score on training rows, stride-1 test",
        "quick": args.quick,
        "summary": json.loads(summary.to_json(orient="records")),
        "targets": targets,
        "references": {
            f"{k[0]}|{k[1] or 'any'}|{k[2]}": v for k, v in REFERENCES.get(dataset, {}).items()
        },
        "lines": str(lines_path),
    }
    summary_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    print(f"\nwrote {summary_path} ({len(latest)} cell-seeds from {lines_path.name})")
    if any(math.isnan(v) for v in summary.mse):
        print("warning: a model produced NaN MSE")


if __name__ == "__main__":
    main()
