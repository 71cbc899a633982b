"""The written half of a run: tables, plots, `metrics.json`, and a report of the run folder
as Markdown (`report.md`, figures linked) and self-contained HTML (`report.html`, figures
embedded as base64 PNG, no external files or scripts).

`write_report(run_dir)` rebuilds both reports from the files in a run folder alone:
`python -m forecast.report runs/<name>`.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast import compare
from forecast.config import ExperimentConfig
from forecast.data.prepare import DataBundle
from forecast.evaluate import Predictions, predictions_frame
from forecast.io import atomic_write
from forecast.plots import (
    backtest_plot,
    forecast_plot,
    history_plot,
    horizon_error_plot,
    leaderboard_plot,
    plot_windows,
)
from forecast.runs import RunFolder

log = logging.getLogger(__name__)

SHOWN = [
    "model", "kind", "mse", "mse_std", "mae", "mae_std", "rmse", "smape", "mase",
    "orig_mse", "orig_mae", "skill_vs_naive", "dm_stat", "dm_p_value", "coverage_{level}",
    "width_{level}", "orig_width_{level}", "crps", "orig_crps", "fit_seconds",
]  # fmt: skip
"""Leaderboard columns shown in reports and printed by the CLI; `{level}` is the
headline interval level (`headline_level`)."""

UNITLESS = ("smape", "mase", "skill_vs_naive", "dm_stat", "dm_p_value", "fit_seconds")


def label(column: str) -> str:
    """A metric column's header with its unit: errors are computed on the scaled
    (z-scored) values unless prefixed `orig_` (original units); coverage has no unit.

    >>> label("orig_width_80"), label("coverage_80"), label("mse_std")
    ('width 80% (original units)', 'coverage 80%', 'mse std (scaled)')

    Args:
        column: a leaderboard column.
    """
    if column in ("model", "kind", "intervals", *UNITLESS):
        return column
    unit = "original units" if column.startswith("orig_") else "scaled"
    name = column.removeprefix("orig_").replace("_std", " std")
    for kind in ("coverage", "width"):
        if name.startswith(f"{kind}_"):
            name = f"{kind} {name.removeprefix(kind + '_')}%"
    return name if name.startswith("coverage") else f"{name} ({unit})"


def headline_level(board: pd.DataFrame) -> str | None:
    """The interval level the leaderboard shows: '80' when scored, else the first one
    scored (`run.interval_levels`); None without intervals.

    Args:
        board: the leaderboard.
    """
    cols = compare.interval_columns(board.columns)
    levels = [c.removeprefix("coverage_") for c in cols if c.startswith("coverage_")]
    return "80" if "80" in levels else (levels[0] if levels else None)


UNITS_NOTE = (
    "(scaled): on the z-scored values (each target standardised with its training mean "
    "and std, `data.scaling`); (original units): the same errors on the data's own scale. "
    "smape, mase, skill_vs_naive and interval coverage have no units."
)

Block = tuple[str, Any]  # ("h1" | "h2" | "p" | "table" | "img", payload)


def write_outputs(
    folder: RunFolder,
    cfg: ExperimentConfig,
    bundle: DataBundle,
    board: pd.DataFrame,
    per_seed: pd.DataFrame,
    curves: pd.DataFrame,
    significance: pd.DataFrame,
    folds: pd.DataFrame | None,
    preds: dict[tuple[str, int], np.ndarray],
) -> None:
    """Write every table, plot, `metrics.json` and both reports of a finished run.

    Args:
        folder: the run folder.
        cfg: the experiment config.
        bundle: the prepared data.
        board: the leaderboard (with DM columns).
        per_seed: one row per (model, seed).
        curves: per-horizon metrics per (model, seed).
        significance: the DM table.
        folds: backtest table or None.
        preds: (model, seed) -> test predictions (the forecast plot draws the first seed).
    """
    horizon = compare.per_horizon_mean(curves)
    folder.write_csv("metrics_per_seed.csv", per_seed)
    folder.write_csv("per_horizon.csv", horizon)
    folder.write_csv("per_horizon_per_seed.csv", curves)
    folder.write_csv("leaderboard.csv", board)
    folder.write_csv("significance.csv", significance)
    lay = bundle.layout
    head = (
        f"Leaderboard: {cfg.data.dataset}, targets {list(lay.targets)}, input "
        f"{lay.input_length}, horizon {lay.horizon}, {len(bundle.test)} test windows, "
        f"seeds {cfg.run.seeds}"
    )
    head = f"# {compare.markdown_escape(head)}\n\n{_note(cfg, significance)}\n\n"
    folder.write_text("leaderboard.md", head + compare.markdown_table(display_board(board)))

    summary = None
    if folds is not None:
        folder.write_csv("backtest.csv", folds)
        summary = folds.groupby(["model", "fold"], sort=False)["mse"].mean().reset_index()
    if cfg.run.plots:
        _write_plots(folder, cfg, bundle, board, horizon, significance, folds, preds)
    folder.write_json(
        "metrics.json",
        {
            "leaderboard": board.to_dict("records"),
            "per_seed": per_seed.to_dict("records"),
            "significance": significance.to_dict("records"),
            "backtest": None if summary is None else summary.to_dict("records"),
        },
    )
    paths = write_report(folder.path)
    log.info("wrote %s (%s)", folder.path, ", ".join(sorted(_top_level(folder.path))))
    log.info("report: %s and %s", paths[1], paths[0].name)


def _top_level(run_dir: Path) -> list[str]:
    return [p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if p.name[0] != "."]


def _write_plots(
    folder: RunFolder,
    cfg: ExperimentConfig,
    bundle: DataBundle,
    board: pd.DataFrame,
    horizon: pd.DataFrame,
    significance: pd.DataFrame,
    folds: pd.DataFrame | None,
    preds: dict[tuple[str, int], np.ndarray],
) -> None:
    """Every figure of a run under plots/, each with the data behind it as CSV."""
    base = str(significance["dm_vs"].iloc[0])
    neural = board.loc[board["kind"] == "neural", "model"]
    best = str(neural.iloc[0]) if len(neural) else str(board["model"].iloc[0])
    # The best neural model next to the best baseline (and repeat-last for scale).
    shown = [n for n in dict.fromkeys([best, base, "naive"]) if (n, cfg.run.seeds[0]) in preds]
    frames = _forecast_frames(bundle, preds, shown, cfg.run.seeds[0], folder)
    fig, data = forecast_plot(*frames)
    folder.write_figure("plots/forecasts.png", fig, data)
    groups = {n: model_family(n) for n in board["model"]}
    fig = horizon_error_plot(horizon, groups=groups)
    folder.write_figure("plots/horizon_mse.png", fig, horizon)
    folder.write_figure("plots/leaderboard.png", leaderboard_plot(board), display_board(board))
    histories = {}
    for name in dict.fromkeys(n for n, _ in preds):
        path = folder.file(f"history/{name}_seed{cfg.run.seeds[0]}.csv")
        if path.is_file():
            histories[name] = pd.read_csv(path)
    if histories:
        folder.write_figure("plots/history.png", *history_plot(histories, groups))
    if folds is not None:
        folder.write_figure("plots/backtest.png", *backtest_plot(folds))


FAMILIES = {
    "forecast.models.baselines": "baselines",
    "forecast.models.lstm": "LSTMs",
    "forecast.models.lstm_classic": "LSTMs",
    "forecast.models.segment": "LSTMs",
    "forecast.models.transformer": "transformers",
    "forecast.models.dlinear": "linear networks",
}
"""Plot panels: a model's family is the module of the first class in its class's MRO
that is listed here (so subclasses, e.g. the pretrained transformer, join their base)."""


def model_family(name: str) -> str:
    """The family a registered model is drawn with in the many-model plots.

    Args:
        name: a registered model name.
    """
    from forecast.models.registry import get_entry

    entry = get_entry(name)
    for cls in entry.cls.__mro__:
        if cls.__module__ in FAMILIES:
            return FAMILIES[cls.__module__]
    return "baselines" if entry.kind == "baseline" else "other models"


def _forecast_frames(
    bundle: DataBundle,
    preds: dict[tuple[str, int], np.ndarray],
    names: list[str],
    seed: int,
    folder: RunFolder | None = None,
    n_origins: int = 3,
) -> tuple[dict[str, pd.DataFrame], str, np.ndarray]:
    """Tidy frames (first target, first series) of the windows the forecast plot draws
    (`forecast.plots.plot_windows`). Built from the arrays in memory, so the plot does
    not depend on `run.predictions`; with `folder`, each model's 80 % interval
    (`results/<model>/seed<k>_band.npz`, written by the runner) adds `lower`/`upper`.

    Returns (model -> frame, the target, the picked origin times).
    """
    ds, lay = bundle.test, bundle.layout
    origin = ds.origin_rows()  # [N] global rows
    windows, picked = plot_windows(origin, ds.series_index, lay.horizon, n_origins)
    sub = ds.subset(windows)
    target = np.concatenate([b["future_target"].numpy() for b in sub.iter_batches(4096)])
    first = lay.targets[0]
    frames = {}
    for n in names:
        frame = predictions_frame(
            Predictions(preds[n, seed][windows], target, sub.series_index, origin[windows]),
            bundle,
            sub,
            targets=[first],
        )
        band = _band(folder, n, seed, windows) if folder is not None else None
        if band is not None:  # [n_windows, H, targets] each, scaled
            lower, upper = (bundle.to_original(b, sub)[..., 0].reshape(-1) for b in band)
            frame = frame.assign(lower=lower, upper=upper)
        frames[n] = frame
    return frames, first, bundle.frame.timestamps[origin[picked]]


def _band(
    folder: RunFolder, name: str, seed: int, windows: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """A pair's stored 80 % interval for the plot's windows; None when absent or stored
    for other windows."""
    path = folder.file(f"results/{name}/seed{seed}_band.npz")
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if not np.array_equal(z["window"], windows):
                return None
            return z["lower"], z["upper"]
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s is unreadable (%s): forecasts drawn without a band", path, err)
        return None


def horizon_table(
    per_horizon: pd.DataFrame, board: pd.DataFrame, metric: str = "mse"
) -> pd.DataFrame:
    """MSE at five forecast steps (first, quarters, last) per model, in leaderboard order.

    Args:
        per_horizon: columns model, step and the metric (mean over seeds).
        board: the leaderboard, for the model order.
        metric: which error.
    """
    horizon = int(per_horizon["step"].max())
    steps = sorted({1, *(max(1, round(horizon * q)) for q in (0.25, 0.5, 0.75)), horizon})
    wide = per_horizon[per_horizon["step"].isin(steps)].pivot(
        index="model", columns="step", values=metric
    )
    unit = "original units" if metric.startswith("orig_") else "scaled"
    unit = "" if metric.startswith("coverage") else f" ({unit})"
    wide.columns = [f"{metric.removeprefix('orig_')}{unit} step {c}" for c in wide.columns]
    return wide.reindex(board["model"]).reset_index()


def _note(cfg: ExperimentConfig, significance: pd.DataFrame) -> str:
    base = significance["dm_vs"].iloc[0]
    which = {
        "first_seed": f"the first seed's predictions (seed {cfg.run.seeds[0]})",
        "seed_mean": "the mean prediction over seeds",
    }[cfg.evaluation.dm_predictions]
    return (
        f"Errors {UNITS_NOTE} Mean (and std; blank with one seed) over "
        "seeds. `skill_vs_naive` = 1 - MSE / MSE(repeat last value). `dm_stat`/`dm_p_value`: "
        f"Diebold-Mariano test against the best baseline `{base}` on the per-window mean "
        f"squared error of {which}; HAC variance over lags 0..h-1 (equal weights, Newey-West "
        "if not positive), Harvey-Leybourne-Newbold correction, two-sided p-value from "
        f"Student's t; negative = lower loss than `{base}`."
    )


def display_board(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as shown to a person: the `SHOWN` columns, units in the headers.

    Args:
        board: the leaderboard.
    """
    level = headline_level(board)
    shown = [c.format(level=level) for c in SHOWN]
    cols = [c for c in shown if c in board]
    return board[cols].rename(columns={c: label(c) for c in cols})


# ----------------------------------------------------------------------- reports
def _blocks(run_dir: Path) -> list[Block]:
    """The report's content, read from the files of a run folder."""
    resolved = json.loads((run_dir / "config.json").read_text())
    env_path = run_dir / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    cfg, data = resolved["config"], resolved["data"]
    lay = data["layout"]
    board = pd.read_csv(run_dir / "leaderboard.csv")
    per_step = pd.read_csv(run_dir / "per_horizon.csv")
    sig = pd.read_csv(run_dir / "significance.csv")
    git = env.get("git", {}).get("commit", "unknown")
    pkgs = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    blocks: list[Block] = [
        ("h1", f"Experiment report: {run_dir.name}"),
        (
            "p",
            f"Dataset {cfg['data']['dataset']}, targets {lay['targets']}, input length "
            f"{lay['input_length']}, horizon {lay['horizon']}; {data['windows']['test']} test "
            f"windows (stride {cfg['evaluation']['stride']}); seeds {cfg['run']['seeds']}; "
            f"{len(board)} models.",
        ),
        ("p", f"Git commit {git}; device {env.get('device', {}).get('resolved', '?')}; {pkgs}."),
        ("h2", "Leaderboard"),
        ("table", display_board(board)),
        ("p", _note_from(cfg, sig)),
        ("img", "plots/leaderboard.png"),
        ("h2", "Error per forecast step"),
        ("table", horizon_table(per_step, board)),
        ("img", "plots/horizon_mse.png"),
        ("h2", "Forecasts"),
        ("img", "plots/forecasts.png"),
        (
            "p",
            "Every test window's predictions, per model and seed: "
            "results/<model>/seed<k>.npz (scaled float32 with timestamps, series and the "
            "scaler; forecast.evaluate.load_predictions(path) reads them in original "
            "units). The first test windows, readable: predictions/<model>_sample.csv "
            "(run.predictions = 'csv' adds every window as predictions/<model>.csv).",
        ),
    ]
    blocks += interval_blocks(board, per_step)
    training = training_table(run_dir)
    if training is not None:
        blocks += [("h2", "Training"), ("table", training), ("p", _training_note(training))]
    if (run_dir / "plots/history.png").is_file():
        blocks += [("h2", "Training curves (first seed)"), ("img", "plots/history.png")]
    if (run_dir / "backtest.csv").is_file():
        folds = pd.read_csv(run_dir / "backtest.csv")
        wide = folds.groupby(["model", "fold"])["mse"].mean().unstack("fold")
        wide.columns = [f"fold {c} mse" for c in wide.columns]
        wide = wide.assign(mean_mse=wide.mean(axis=1)).sort_values("mean_mse").reset_index()
        refit = "retrained per fold" if bool(folds["refit"].iloc[0]) else "fitted once"
        blocks += [
            ("h2", f"Rolling-origin backtest ({refit})"),
            ("table", wide),
            ("img", "plots/backtest.png"),
        ]
    blocks += interpretation_blocks(run_dir)
    return blocks


def interval_blocks(board: pd.DataFrame, per_horizon: pd.DataFrame) -> list[Block]:
    """The report's section on calibrated intervals: coverage and width per level, the
    quantile losses, and the 80 % coverage per forecast step (none without intervals).

    Args:
        board: the leaderboard.
        per_horizon: per-step metrics (mean over seeds).
    """
    level = headline_level(board)
    if level is None:
        return []
    cols = [c for c in ["intervals", *compare.interval_columns(board.columns)] if c in board]
    table = board[["model", *cols]]
    blocks: list[Block] = [
        ("h2", "Prediction intervals"),
        ("table", table.rename(columns={c: label(c) for c in cols})),
        (
            "p",
            "Intervals calibrated on the validation windows and scored on every test "
            "window: split-conformal intervals around the point forecast (residuals "
            "scaled by each window's mean absolute input step, recalibrated as actuals "
            "arrive: forecast.intervals), or conformalised quantile regression for a model "
            "with a quantile head (blank levels: levels the head does not predict). "
            "Levels: run.interval_levels (--interval-levels). coverage: fraction of "
            "actuals inside; width: mean interval width; pinball, wql (weighted quantile "
            "loss) and crps (2 x mean pinball over the levels) on the quantiles the "
            "intervals make, with the point forecast as the median; (scaled) on the "
            "z-scored values, (original units) on the data's own scale.",
        ),
    ]
    if f"coverage_{level}" in per_horizon:
        blocks.append(("table", horizon_table(per_horizon, board, metric=f"coverage_{level}")))
    return blocks


def training_table(run_dir: Path) -> pd.DataFrame | None:
    """Per neural model: epochs run and kept, and what ended training, over seeds.

    Args:
        run_dir: the run folder (reads metrics_per_seed.csv).
    """
    path = run_dir / "metrics_per_seed.csv"
    if not path.is_file():
        return None
    per_seed = pd.read_csv(path)
    if "epochs_run" not in per_seed:
        return None
    torch_rows = per_seed.dropna(subset=["epochs_run"])
    if torch_rows.empty:
        return None
    rows = []
    for name, g in torch_rows.groupby("model", sort=False):
        budget = g["stopped_early"].astype(str).str.lower() != "true"
        ended = (
            "early stopping"
            if not budget.any()
            else f"the epoch budget ({int(g['epoch_budget'].max())}) in {int(budget.sum())} of "
            f"{len(g)} seed(s): NOT converged, more epochs may help"
        )
        rows.append(
            {
                "model": name,
                "epochs run": " / ".join(str(int(v)) for v in g["epochs_run"]),
                "best epoch": " / ".join(str(int(v)) for v in g["best_epoch"]),
                "training ended by": ended,
                "fit seconds": round(float(g["fit_seconds"].mean()), 1),
            }
        )
    return pd.DataFrame(rows)


def _training_note(table: pd.DataFrame) -> str:
    capped = table.loc[table["training ended by"] != "early stopping", "model"].tolist()
    if not capped:
        return (
            "Every neural model trained until its validation loss stopped improving (best "
            "epoch 0: no epoch beat the model's least-squares warm start)."
        )
    return (
        f"{', '.join(capped)} stopped at the epoch budget, not by early stopping: the "
        "scores may improve with a larger `train.epochs`."
    )


def interpretation_blocks(run_dir: Path) -> list[Block]:
    """The Interpretation section: each model's verdicts and key figures inline.

    Args:
        run_dir: the run folder (reads interpret/*/summary.json).
    """
    summaries = sorted((run_dir / "interpret").glob("*/summary.json"))
    if not summaries:
        return []
    blocks: list[Block] = [("h2", "Interpretation")]
    for path in summaries:
        summary = json.loads(path.read_text())
        rel = path.parent.relative_to(run_dir).as_posix()
        blocks.append(("h3", f"{path.parent.name}"))
        for line in summary.get("verdicts", []):
            blocks.append(("p", line))
        for fig in summary.get("key_figures", []):
            if (path.parent / fig).is_file():
                blocks.append(("img", f"{rel}/{fig}"))
        blocks.append(
            ("p", f"All figures with their data: {rel}/, the verdicts: {rel}/summary.md.")
        )
    return blocks


def _note_from(cfg: dict, sig: pd.DataFrame) -> str:
    which = cfg["evaluation"]["dm_predictions"].replace("_", " ")
    return (
        f"Errors {UNITS_NOTE} Mean (and std; blank with one seed) over seeds. "
        "DM: Diebold-Mariano test vs the best baseline "
        f"`{sig['dm_vs'].iloc[0]}` on per-window mean squared error ({which} predictions), "
        "HAC variance over lags 0..h-1, Harvey-Leybourne-Newbold correction; negative "
        "statistic = lower loss than the baseline."
    )


def _markdown(blocks: list[Block]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {compare.markdown_escape(payload)}\n")
        elif kind == "p":
            out.append(f"{compare.markdown_escape(payload)}\n")
        elif kind == "table":
            out.append(compare.markdown_table(payload))
        elif kind == "img":
            out.append(f"![{Path(payload).stem}]({payload})\n")
    return "\n".join(out)


def _drop_missing_images(blocks: list[Block], run_dir: Path) -> list[Block]:
    return [b for b in blocks if b[0] != "img" or (run_dir / b[1]).is_file()]


def _html(blocks: list[Block], run_dir: Path) -> str:
    body = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(str(payload))}</p>")
        elif kind == "table":
            body.append(compare.formatted(payload).to_html(index=False))  # escapes the text
        elif kind == "img" and (run_dir / payload).is_file():
            data = base64.b64encode((run_dir / payload).read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(payload)}" src="data:image/png;base64,{data}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}img{max-width:100%;display:block;margin:1em 0}"
    )
    title = html.escape(str(blocks[0][1]))
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and the self-contained `report.html` of a run folder.

    Args:
        run_dir: a finished run folder (config.json, leaderboard.csv, plots/ ...).
    """
    run_dir = Path(run_dir)
    blocks = _drop_missing_images(_blocks(run_dir), run_dir)
    md = atomic_write(run_dir / "report.md", lambda p: p.write_text(_markdown(blocks)))
    page = _html(blocks, run_dir)
    return md, atomic_write(run_dir / "report.html", lambda p: p.write_text(page))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m forecast.report RUN_DIR")
    for written in write_report(sys.argv[1]):
        print(written)
