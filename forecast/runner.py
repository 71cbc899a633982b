"""The working half of a run: load the data, then fit, predict and score every (model,
seed) pair, in this process or elsewhere (a pool of worker processes, a Ray cluster: see
`forecast.executors`), storing each pair's results in the run folder as soon as it is done.

A pair writes `results/<model>/seed<k>.npz` (its test predictions, compressed float32,
with their timestamps, series and scaler: see `forecast.evaluate.prediction_arrays`) and then
`results/<model>/seed<k>.json` (its metrics), the marker that it is done; before the
marker, with `run.checkpoints`, its fitted model as a `forecast.pipeline.Pipeline` in
`models/<model>_seed<k>.pt` (every model, baselines included). A pair fitted elsewhere
writes these files into a scratch folder and sends them back
(`forecast.executors.pair_files`); this process stores them (`Runner.store`), the marker
last. A pair whose marker exists is read back instead of refitted; that is how `resume`
works.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecast import backtest as bt
from forecast import metrics
from forecast.config import (
    ConfigError,
    ExperimentConfig,
    config_to_dict,
    model_names,
    model_params,
    validate,
)
from forecast.data.prepare import DataBundle
from forecast.data.source import load_source, make_bundle, prepare_options
from forecast.evaluate import (
    Predictions,
    predict_dataset,
    prediction_arrays,
    predictions_frame,
    score,
)
from forecast.intervals import IntervalScores, interval_scores
from forecast.io import atomic_write_bytes, read_json
from forecast.models.base import Forecaster
from forecast.models.registry import create_model, get_entry
from forecast.pipeline import Pipeline, artifact_path
from forecast.plots import plot_windows
from forecast.runs import RunFolder, environment_manifest

log = logging.getLogger(__name__)


def _stored_config(cfg: ExperimentConfig, names: list[str]) -> dict[str, Any]:
    """The config as written to config.json: model groups expanded to names."""
    return {**config_to_dict(cfg), "models": names}


SAMPLE_WINDOWS = 8
"""Test windows (the first ones) in `predictions/<model>_sample.csv`."""

NO_EFFECT = (
    "progress", "output_dir", "name", "workers", "plots", "predictions", "executor", "address",
)  # fmt: skip
"""`run` keys that cannot change a (model, seed) result: free to differ on resume."""


def same_config(a: dict, b: dict) -> bool:
    """Equal configs, ignoring the `NO_EFFECT` keys."""

    def strip(c: dict) -> dict:
        run = {k: v for k, v in c["run"].items() if k not in NO_EFFECT}
        return json.loads(json.dumps({**c, "run": run}, default=str))

    return strip(a) == strip(b)


class Runner:
    """State of one run: config, data, folder; fits or reads back every (model, seed).

    Everything is validated (config, data, each model built once for the data's layout)
    before a folder is made or written to.

    Args:
        cfg: the experiment.
        run_dir: the existing run folder ('resume'); None for 'new' and 'worker'.
        mode: 'new' (make a folder, write config.json and environment.json), 'resume'
            (check that the folder's config is `cfg`) or 'worker' (a process that fits
            pairs for another one: no run folder, see `pair_files`).
    """

    def __init__(
        self, cfg: ExperimentConfig, run_dir: str | Path | None, mode: str = "new"
    ) -> None:
        if mode not in ("new", "resume", "worker"):
            raise ValueError(f"mode must be 'new', 'resume' or 'worker', got {mode!r}")
        validate(cfg)
        self.cfg = cfg
        self.df, self.roles, self.split, self.meta = load_source(cfg.data)
        self.bundle = make_bundle(cfg, self.df, self.roles, self.split)
        # With the data's seasonal period known: a baseline that cannot run is left out.
        self.names = model_names(cfg, self.bundle.layout, warn=mode != "worker")
        for name in self.names:  # layout-dependent errors, still before any training
            try:
                create_model(name, self.bundle.layout, **model_params(cfg, name, cfg.run.seeds[0]))
            except (ValueError, TypeError) as err:
                raise ConfigError(f"model {name!r}: {err}") from None
        stored = _stored_config(cfg, self.names)
        self.folder: RunFolder | None = None
        if mode == "new":
            self.folder = RunFolder(cfg.run.output_dir, cfg.run.name)
            try:
                self.folder.write_json("config.json", self._resolved(stored))
                env = environment_manifest(cfg.run.seeds, cfg.run.device)
                self.folder.write_json("environment.json", env)
            except BaseException:  # e.g. a full disk: leave no folder for a run not started
                shutil.rmtree(self.folder.path, ignore_errors=True)
                raise
        elif mode == "resume":
            self.folder = RunFolder.existing(run_dir)
            self.folder.remove_stale_tmp()  # before any worker starts writing here
            before = self.folder.config()["config"]
            if not same_config(before, stored):
                raise ConfigError(
                    f"{run_dir}/config.json holds a different config than the one given; "
                    "resume with the run folder alone (--resume RUN_DIR)"
                )
            self._check_environment()
        ds = self.bundle.test
        self.target = np.concatenate([b["future_target"].numpy() for b in ds.iter_batches(4096)])
        self.models: dict[str, Forecaster] = {}

    def _check_environment(self) -> None:
        path = self.folder.file("environment.json")
        if not path.is_file():
            return
        now = environment_manifest(self.cfg.run.seeds, self.cfg.run.device)
        try:
            old = read_json(path)
        except ValueError as err:  # damaged: the report reads it, so write this one
            log.warning("%s; replaced by this process's environment", err)
            self.folder.write_json("environment.json", now)
            return
        for key in ("packages", "device", "torch_threads"):
            if old.get(key) != now.get(key):
                log.warning(
                    "resuming with a different %s (%s, was %s): reused and new results may "
                    "not match an uninterrupted run exactly",
                    key,
                    now.get(key),
                    old.get(key),
                )

    def _resolved(self, stored: dict) -> dict:
        b = self.bundle
        return {
            "config": stored,
            "data": {
                **self.meta,
                "series": b.frame.series_ids,
                "rows": b.frame.lengths().tolist(),
                "freq": b.frame.freq,
                "split_borders": b.borders,
                "windows": {
                    p: len(d) if d is not None else 0
                    for p, d in (("train", b.train), ("val", b.val), ("test", b.test))
                },
                "layout": dataclasses.asdict(b.layout),
            },
            "model_params": {
                n: model_params(self.cfg, n, self.cfg.run.seeds[0]) for n in self.names
            },
        }

    def predictions(self, prediction: np.ndarray) -> Predictions:
        """Test predictions [N, H, targets] with their targets, series and origins.

        Args:
            prediction: a pair's stored predictions.
        """
        ds = self.bundle.test
        return Predictions(prediction, self.target, ds.series_index.copy(), ds.origin_rows())

    # ------------------------------------------------------------------ pairs
    def is_done(self, name: str, seed: int) -> bool:
        """Whether the pair's results are in the run folder.

        Args:
            name: the model.
            seed: the seed.
        """
        stem = f"results/{name}/seed{seed}"
        return all(self.folder.file(f"{stem}.{ext}").is_file() for ext in ("json", "npz"))

    def pair(self, name: str, seed: int, log_reuse: bool = True) -> tuple[dict, np.ndarray]:
        """Metrics row and test predictions of one (model, seed): read back or fitted.

        Args:
            name: the model.
            seed: the seed.
            log_reuse: log (at INFO) that stored results are reused.
        """
        stem = f"results/{name}/seed{seed}"
        done, arrays = self.folder.file(f"{stem}.json"), self.folder.file(f"{stem}.npz")
        if done.is_file() and arrays.is_file():
            stored = self._read_pair(done, arrays)
            if stored is not None:
                log.log(
                    logging.INFO if log_reuse else logging.DEBUG,
                    "%s seed %d: reusing %s",
                    name,
                    seed,
                    done,
                )
                return stored
        return self.fit_pair(name, seed, self.folder)

    def fit_pair(self, name: str, seed: int, folder: RunFolder) -> tuple[dict, np.ndarray]:
        """Fit, predict and score one (model, seed) and write its files into `folder`
        (the run folder, or a worker's scratch folder), the done-marker last.

        Args:
            name: the model.
            seed: the seed.
            folder: where the pair's files go.
        """
        cfg, bundle, first = self.cfg, self.bundle, seed == self.cfg.run.seeds[0]
        stem = f"results/{name}/seed{seed}"
        model = create_model(name, bundle.layout, **model_params(cfg, name, seed))
        t0 = time.perf_counter()
        model.fit(bundle.train, bundle.val)
        fit_s = time.perf_counter() - t0
        preds = predict_dataset(model, bundle.test)
        has_val = bundle.val is not None and len(bundle.val) > 0
        val_preds = predict_dataset(model, bundle.val) if has_val else None
        # Predicting: the test windows and the validation windows the intervals calibrate on.
        predict_s = time.perf_counter() - t0 - fit_s
        result = score(preds, bundle, bundle.test)
        curve = metrics.per_horizon_table(preds.target, preds.prediction)
        # Calibrated on val, at run.interval_levels (a quantile head: at its own levels).
        intervals = interval_scores(
            model, bundle, preds, coverages=cfg.run.interval_levels, val_preds=val_preds
        )
        if intervals is not None:
            curve = curve.merge(intervals.per_step, on="step")
        row = {
            "model": name,
            "kind": get_entry(name).kind,
            "seed": seed,
            **result,
            **(intervals.metrics if intervals is not None else {}),
            "fit_seconds": fit_s,
            "predict_seconds": predict_s,
            **training_facts(model),
        }
        log.info(
            "%s seed %d: test mse %.4f mae %.4f (scaled), mse %.4g mae %.4g (original units) "
            "(%.1fs)",
            name, seed, row["mse"], row["mae"], row["orig_mse"], row["orig_mae"], fit_s,
        )  # fmt: skip
        if row.get("stopped_early") is False and bundle.val is not None:
            log.warning(
                "%s seed %d: training ended at the epoch budget (%d epochs), not by early "
                "stopping: it may not have converged (raise train.epochs)",
                name, seed, row["epochs_run"],
            )  # fmt: skip
        folder.write_npz(f"{stem}.npz", **prediction_arrays(preds, bundle, bundle.test))
        if intervals is not None and first:  # the report's forecast plot draws the first seed
            self._write_band(folder, stem, preds, intervals)
        if first:
            self.models[name] = model
            self._write_predictions(folder, name, preds)
        history = getattr(model, "history_", None)
        if isinstance(history, pd.DataFrame) and len(history):
            folder.write_csv(f"history/{name}_seed{seed}.csv", history)
        for stage, extra in getattr(model, "extra_histories_", {}).items():  # e.g. pretraining
            folder.write_csv(f"history/{name}_seed{seed}_{stage}.csv", extra)
        if cfg.run.checkpoints:  # every model: `forecast.load` or the predict command
            self.pipeline(model).save(artifact_path(folder.path, name, seed))
        row["per_horizon"] = curve.to_dict("records")
        folder.write_json(f"{stem}.json", row)  # last: marks the pair as done
        return row, preds.prediction

    def store(self, files: dict[str, bytes]) -> None:
        """Write a pair's files, fitted elsewhere (see `pair_files`), into the run folder,
        each atomically and in the given order (the done-marker last).

        Args:
            files: path inside the run folder -> content.
        """
        root = self.folder.path.resolve()
        for relative, data in files.items():
            path = self.folder.file(relative)
            if root not in path.resolve().parents:
                raise ValueError(f"a worker sent {relative!r}, a path outside the run folder")
            atomic_write_bytes(path, data)

    def pipeline(self, model: Forecaster) -> Pipeline:
        """A model fitted on this run's data with its scaler, roles, options and config.

        Args:
            model: a fitted model of this run.
        """
        return Pipeline.from_bundle(
            model,
            self.bundle,
            self.roles,
            options=prepare_options(self.cfg.data),
            columns=[str(c) for c in self.df.columns],
            config=_stored_config(self.cfg, self.names),
        )

    def _write_band(
        self, folder: RunFolder, stem: str, preds: Predictions, intervals: IntervalScores
    ) -> None:
        """`<stem>_band.npz`: the 80 % interval of the windows the report's forecast plot
        draws (`forecast.plots.plot_windows`), scaled float32."""
        windows, _ = plot_windows(preds.origin, preds.series_index, self.bundle.layout.horizon)
        level, lower, upper = intervals.band(0.8)
        folder.write_npz(
            f"{stem}_band.npz",
            window=windows,
            coverage=np.float64(level),
            lower=lower[windows].astype(np.float32),
            upper=upper[windows].astype(np.float32),
        )

    def _read_pair(self, done: Path, arrays: Path) -> tuple[dict, np.ndarray] | None:
        """A finished pair's stored metrics row and predictions; None (with a warning naming
        the file) when either file is damaged or does not fit this run: it is refitted."""
        try:
            with np.load(arrays) as npz:
                pred = npz["prediction"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            log.warning("%s is damaged or unreadable (%s): refitting", arrays, err)
            return None
        if pred.shape != self.target.shape:
            log.warning(
                "%s has shape %s, expected %s: refitting", arrays, pred.shape, self.target.shape
            )
            return None
        row = self._read_row(done, ("mse", "per_horizon"))
        return None if row is None else (row, pred)

    @staticmethod
    def _read_row(path: Path, keys: tuple[str, ...]) -> dict | None:
        """A stored metrics row; None (with a warning naming the file) when it is damaged."""
        try:
            row = read_json(path)
        except (OSError, ValueError) as err:
            log.warning("%s: refitting", err)
            return None
        missing = [k for k in keys if not isinstance(row, dict) or k not in row]
        if missing:
            log.warning("%s lacks %s: refitting", path, missing)
            return None
        return row

    def _write_predictions(self, folder: RunFolder, name: str, preds: Predictions) -> None:
        """The human-readable prediction files of `run.predictions` (first seed)."""
        mode, ds = self.cfg.run.predictions, self.bundle.test
        if mode == "none":
            return
        sample = np.arange(min(SAMPLE_WINDOWS, len(ds)))
        frame = predictions_frame(preds, self.bundle, ds, windows=sample)
        folder.write_csv(f"predictions/{name}_sample.csv", frame, float_format="%.7g")
        if mode == "csv":  # every window: large, and slow to write
            frame = predictions_frame(preds, self.bundle, ds)
            folder.write_csv(f"predictions/{name}.csv", frame, float_format="%.7g")

    def backtest(self, preds: dict[tuple[str, int], np.ndarray]) -> pd.DataFrame | None:
        """The rolling-origin backtest of `cfg.backtest` (None when off).

        Args:
            preds: (model, seed) -> test predictions of the main run.
        """
        cfg, bundles = self.cfg, {}

        def fit_and_score(name: str, seed: int, fold: bt.Fold) -> dict:
            if fold.index not in bundles:  # one split (and scaler) per fold
                split = bt.refit_split(self.bundle, fold)
                bundles[fold.index] = make_bundle(cfg, self.df, self.roles, split)
            return self.refit_fold(name, seed, fold, bundles[fold.index])

        return bt.run_backtest(
            self.bundle,
            preds,
            folds=cfg.backtest.folds,
            refit=cfg.backtest.refit,
            to_predictions=self.predictions,
            fit_and_score=fit_and_score,
            names=self.names,
            seeds=cfg.run.seeds,
            progress=cfg.run.progress,
        )

    def refit_fold(self, name: str, seed: int, fold: bt.Fold, bundle: DataBundle) -> dict:
        """Metrics of one (model, seed) retrained for one backtest fold: read back or fitted.

        Args:
            name: the model.
            seed: the seed.
            fold: the backtest fold.
            bundle: the data split for that fold (see `backtest.refit_split`).
        """
        path = self.folder.file(f"results/{name}/seed{seed}_fold{fold.index}.json")
        stored = self._read_row(path, ("mse",)) if path.is_file() else None
        if stored is not None:
            return stored
        model = create_model(name, bundle.layout, **model_params(self.cfg, name, seed))
        model.fit(bundle.train, bundle.val)
        row = {
            "model": name,
            "seed": seed,
            "fold": fold.index,
            **score(predict_dataset(model, bundle.test), bundle, bundle.test),
        }
        self.folder.write_json(path.relative_to(self.folder.path).as_posix(), row)
        return row

    def first_seed_model(self, name: str) -> Forecaster | None:
        """The fitted first-seed model: in memory, or read back from its checkpoint.

        Args:
            name: the model.
        """
        if name in self.models:
            return self.models[name]
        seed = self.cfg.run.seeds[0]
        ckpt = artifact_path(self.folder.path, name, seed)
        if not ckpt.is_file():  # a run folder written before models/ existed
            ckpt = self.folder.file(f"checkpoints/{name}_seed{seed}.pt")
        if not ckpt.is_file():
            return None
        from forecast.checkpoint import CheckpointError, load_checkpoint

        try:
            self.models[name] = load_checkpoint(ckpt, device=self.cfg.run.device)
        except CheckpointError as err:  # damaged: the stored results are still good
            log.warning(
                "%s; %s is not interpreted (delete results/%s/seed%d.json to refit it)",
                err, name, name, self.cfg.run.seeds[0],
            )  # fmt: skip
            return None
        return self.models[name]


def training_facts(model: Forecaster) -> dict[str, Any]:
    """How a torch model's training ended: epochs run, the epoch kept, and whether early
    stopping ended it (False: the epoch budget did, and more epochs might have helped).

    Args:
        model: a fitted forecaster (empty dict for models without a training history).
    """
    history = getattr(model, "history_", None)
    if not isinstance(history, pd.DataFrame) or not len(history):
        return {}
    return {
        "epochs_run": len(history),
        "epoch_budget": int(model.config.params().get("epochs", len(history))),
        "best_epoch": getattr(model, "best_epoch_", None),
        "stopped_early": bool(getattr(model, "stopped_early_", False)),
    }


def set_threads(cfg: ExperimentConfig) -> int | None:
    """Apply `run.threads` ('auto' or a count; 1 per worker process for 'auto' when
    workers > 1) through `forecast.threads.apply`.

    Returns the previous torch thread count, to restore.
    """
    import torch

    from forecast import threads

    requested = cfg.run.threads
    if requested in (None, "auto") and cfg.run.workers > 1:
        requested = 1
    before = torch.get_num_threads()
    threads.apply(requested)
    return before
