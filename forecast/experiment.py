"""Run an experiment: load, split, scale, window, fit every model per seed, evaluate on
every test window, compare against the best baseline, and write a run folder.

`run(cfg)` makes a new run folder; `resume(run_dir)` finishes an interrupted one: every
(model, seed) pair stores its results as soon as it is done (see `forecast.runner`), so
finished pairs are read back, unfinished ones retrained, and the leaderboard is rebuilt
from the stored results exactly as an uninterrupted run builds it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast import compare
from forecast.config import ExperimentConfig, config_from_dict, model_params, validate
from forecast.data.prepare import DataBundle
from forecast.data.source import load_source
from forecast.executors import cluster, fit_pairs
from forecast.models.base import Forecaster
from forecast.models.registry import create_model, get_entry
from forecast.runner import Runner, set_threads
from forecast.runs import RunFolder

log = logging.getLogger(__name__)

__all__ = ["ExperimentConfig", "ExperimentResult", "load_source", "resume", "run"]


@dataclass
class ExperimentResult:
    """What a run produced: tables, the data, and where it was written.

    Args:
        leaderboard: one row per model, mean and std over seeds, sorted by test MSE.
        run_dir: the run folder.
        per_seed: one row per (model, seed).
        bundle: the prepared data.
        models: first-seed models fitted in this process (with `run.workers` > 1 or on
            resume: only neural models read back from checkpoints for interpretation).
        significance: Diebold-Mariano tests against the best baseline.
        backtest: per (model, seed, fold) metrics, None without a backtest.
    """

    leaderboard: pd.DataFrame
    run_dir: Path
    per_seed: pd.DataFrame
    bundle: DataBundle
    models: dict[str, Forecaster]
    significance: pd.DataFrame
    backtest: pd.DataFrame | None = None


def run(cfg: ExperimentConfig, *, resume_dir: str | Path | None = None) -> ExperimentResult:
    """Run the experiment described by `cfg` and write its run folder.

    Everything is validated (config, data, every model's parameters) before the folder is
    made or any model is trained.

    Args:
        cfg: the experiment.
        resume_dir: continue this run folder instead of making a new one (its config must
            be `cfg`; see `resume`).
    """
    from forecast.report import write_outputs  # the writing half of a run

    threads_before = set_threads(cfg)
    try:
        with cluster(cfg):  # connected (run.executor 'ray') before the run folder is made
            r = Runner(cfg, resume_dir, mode="new" if resume_dir is None else "resume")
            log.info("run folder %s", r.folder.path)
            try:
                done = fit_pairs(r)
                preds = {p: pred for p, (_, pred) in done.items()}
                folds = r.backtest(preds)
            except KeyboardInterrupt:
                log.error(
                    "interrupted: finished (model, seed) pairs are saved; resume with "
                    "`python run_experiment.py --resume %s`",
                    r.folder.path,
                )
                raise
        rows = [dict(row) for row, _ in done.values()]
        curves = pd.concat(
            [
                pd.DataFrame(row.pop("per_horizon")).assign(model=row["model"], seed=row["seed"])
                for row in rows
            ],
            ignore_index=True,
        )
        per_seed = pd.DataFrame(rows)
        board = compare.leaderboard(per_seed)
        significance = _significance(r, board, preds)
        board = board.merge(
            significance[["model", "dm_stat", "dm_p_value"]], on="model", how="left"
        )
        if cfg.run.interpret:
            _interpret(r, str(board["model"].iloc[0]))
        write_outputs(r.folder, cfg, r.bundle, board, per_seed, curves, significance, folds, preds)
    finally:
        if threads_before is not None:
            import torch

            torch.set_num_threads(threads_before)
    return ExperimentResult(board, r.folder.path, per_seed, r.bundle, r.models, significance, folds)


def resume(
    run_dir: str | Path,
    *,
    progress: bool | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> ExperimentResult:
    """Finish an interrupted run in its own folder: finished pairs are reused.

    Args:
        run_dir: the run folder (holding config.json).
        progress: show progress bars; the stored setting when None.
        executor: 'local' or 'ray' instead of the stored `run.executor` (results do not
            depend on it).
        address: the Ray cluster instead of the stored `run.address`.
    """
    folder = RunFolder.existing(run_dir)
    stored = folder.config().get("config")
    if not isinstance(stored, dict):
        raise ValueError(f"{folder.file('config.json')} holds no 'config' section")
    cfg = config_from_dict(stored)
    if progress is not None:
        cfg.run.progress = progress
    if executor is not None or address is not None:
        cfg.run.executor = executor or cfg.run.executor
        cfg.run.address = address if cfg.run.executor == "ray" else None
        validate(cfg)
    return run(cfg, resume_dir=folder.path)


def _significance(r: Runner, board: pd.DataFrame, preds: dict) -> pd.DataFrame:
    """DM test of every model against the best baseline, on per-origin mean squared error."""
    cfg = r.cfg
    ds = r.bundle.test
    origin_time = r.bundle.frame.timestamps[ds.origin_rows()]
    if r.bundle.frame.n_series == 1:
        origin_time = None  # already one window per origin, in time order
    losses = {}
    for name in r.names:
        if cfg.evaluation.dm_predictions == "seed_mean":
            pred = np.mean([preds[name, s] for s in cfg.run.seeds], axis=0)
        else:
            pred = preds[name, cfg.run.seeds[0]]
        losses[name] = compare.window_losses(pred, r.target, origin_time)
    lag_h = math.ceil(cfg.data.horizon / cfg.evaluation.stride)  # windows sharing a target
    return compare.significance_table(losses, compare.best_baseline(board), lag_h)


MODEL_AGNOSTIC = ("permutation", "agreement")
"""Interpretation sections run for a baseline (no attention, no torch network)."""


def _interpret(r: Runner, best: str) -> None:
    """Interpretation of every neural model's first seed, under interpret/<model>/; and of
    the best model when it is a baseline: its model-agnostic sections (permutation
    importance, deletion test), so the model that wins is always explained.

    Args:
        r: the runner.
        best: the model at the top of the leaderboard.
    """
    try:
        from forecast.interpret import interpret_model
    except ImportError as err:
        log.warning(
            "run.interpret is true but forecast.interpret cannot be imported (%s): "
            "no interpretation written",
            err,
        )
        return
    truth = None
    if "truth" in r.meta:
        from forecast.data.synthetic import GroundTruth

        truth = GroundTruth.from_dict(r.meta["truth"])
    opts = r.cfg.interpret
    names = [n for n in r.names if get_entry(n).kind == "neural"]
    if get_entry(best).kind != "neural":
        log.info("%s, a baseline, is the best model: interpreting it too", best)
        names.append(best)
    for name in names:
        neural = get_entry(name).kind == "neural"
        out = r.folder.file(f"interpret/{name}")
        if (out / "summary.md").is_file():  # written last by interpret_model
            log.info("%s: interpretation already written, reusing %s", name, out)
            continue
        model = r.first_seed_model(name) if neural else _baseline_model(r, name)
        if model is None:
            log.warning(
                "%s: no fitted model or checkpoint to interpret (run.checkpoints is "
                "false?): skipped",
                name,
            )
            continue
        log.info("%s: writing interpretation to %s", name, out)
        try:
            interpret_model(
                model,
                r.bundle,
                out,
                truth=truth,
                max_windows=opts.max_windows,
                n_repeats=opts.n_repeats,
                ig_steps=opts.ig_steps,
                ig_windows=opts.ig_windows,
                seed=r.cfg.run.seeds[0],
                progress=r.cfg.run.progress,
                **({} if neural else {"sections": MODEL_AGNOSTIC}),
            )
        except Exception:  # one model's failure must not lose the finished leaderboard
            log.exception("%s: interpretation failed; the other results are still written", name)


def _baseline_model(r: Runner, name: str) -> Forecaster:
    """A baseline's first-seed model: in memory, or refitted (seconds; not checkpointed)."""
    if name not in r.models:
        params = model_params(r.cfg, name, r.cfg.run.seeds[0])
        r.models[name] = create_model(name, r.bundle.layout, **params).fit(
            r.bundle.train, r.bundle.val
        )
    return r.models[name]
