"""Hyperparameter search with Optuna: `run_experiment.py --search FILE`.

A search file is an experiment config with a `[search]` section (see `SearchConfig`)::

    models = ["lstm"]
    [train]
    epochs = 30
    [search]
    n_trials = 40
    [search.space]            # config paths, as --set writes them -> distributions
    "train.lr" = {type = "float", low = 1e-4, high = 1e-2, log = true}
    "lstm.hidden_size" = {type = "int", low = 16, high = 128, log = true}
    "lstm.attention" = {type = "categorical", choices = ["luong_dot", "bahdanau"]}
    [search.pruner]           # 'type', then the pruner's own arguments
    type = "median"
    n_warmup_steps = 3

A trial fits the searched model (`search.model`, or the config's one neural model) with
the trial's values on the training windows (seed `run.seeds[0]`) and returns its
validation loss as the training loop measures it for early stopping (the weights it
keeps); the test part is never seen. The loop calls back after every epoch
(`TorchForecaster.epoch_callbacks`), so the pruner can stop a trial early.

The study lives in a database, shared by every worker that reaches it:
`search.storage` or `--storage` (e.g. `postgresql://user:pw@host/db` across machines,
which needs that database's driver), by default the SQLite file `study.db` of the search
folder `<run.output_dir>/<study name>`. `run.workers` (`--workers N`) local processes
work on it together. The study ends at `n_trials` finished (complete or pruned) trials,
however many workers ran them; running the same command again continues it (raise
`n_trials` to add trials). On one machine the count is exact (a lock file beside the
SQLite file); workers on several machines sharing a server database may together run a
trial or two more.

The search folder gets `trials.csv`, `best_config.toml` (the base config with the best
trial's values, for `run_experiment.py --config`), the best-so-far plot, parameter
importances and `report.html` / `report.md` (see `forecast.search_report`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import json
import logging
import multiprocessing
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forecast.config import ConfigError, config_from_dict, config_to_dict, with_values
from forecast.config_checks import typed_fields
from forecast.threads import fixed_count

log = logging.getLogger(__name__)

SPACE_TYPES = ("int", "float", "categorical")
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}
OPTUNA_MISSING = "--search needs Optuna, which is not installed: pip install -e '.[search]'"
UNCHECKED = ("n_trials", "storage")
"""[search] keys free to change when a study is continued."""


@dataclass
class SearchConfig:
    """The `[search]` section of a search file.

    Args:
        space: config path (as `--set` writes it: 'train.lr', 'lstm.hidden_size') ->
            distribution: {type = 'int' | 'float', low, high, log, step} or
            {type = 'categorical', choices = [...]}.
        n_trials: finished (complete or pruned) trials the study ends with; running the
            command again with a larger value adds trials.
        direction: 'minimize' the validation loss (or 'maximize').
        model: the model tuned; default: the one neural model of `models`.
        study_name: the study's name and folder; default: the file's name without .toml.
        storage: database URL of the study; default: `study.db` (SQLite) in the folder.
        sampler: 'tpe' or 'random'.
        seed: seeds the sampler (each worker and each continuation draws its own stream).
        pruner: {type = 'none' | 'median' | 'percentile' | 'threshold' |
            'successive_halving' | 'hyperband', then the pruner's arguments}.
        enqueue: trials run first, each a {path = value} table (e.g. today's defaults).
    """

    space: dict[str, Any] = field(default_factory=dict)
    n_trials: int = 20
    direction: str = "minimize"
    model: str | None = None
    study_name: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    seed: int = 0
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    enqueue: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Param:
    """One searched setting: its config path and distribution (see `SearchConfig.space`)."""

    path: str
    type: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        where = f"[search.space] {self.path!r}"
        if self.type not in SPACE_TYPES:
            raise ConfigError(
                f"{where}: type must be one of {list(SPACE_TYPES)}, got {self.type!r}"
            )
        if self.type == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ConfigError(f"{where}: a categorical needs choices = [...] (and no low/high)")
            return
        if self.low is None or self.high is None or self.choices is not None:
            raise ConfigError(f"{where}: type {self.type!r} needs low and high (and no choices)")
        if self.type == "int" and not all(isinstance(v, int) for v in (self.low, self.high)):
            raise ConfigError(f"{where}: an int needs integer low and high")
        if not self.low < self.high:
            raise ConfigError(f"{where}: low must be below high, got {self.low} and {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ConfigError(f"{where}: log = true needs low > 0 and no step")

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this setting.

        Args:
            trial: an `optuna.Trial`.
        """
        if self.type == "categorical":
            return trial.suggest_categorical(self.path, self.choices)
        if self.type == "int":
            return trial.suggest_int(
                self.path, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list[Any]:
        """The extreme values (every choice), to validate before any trial runs."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass
class Search:
    """A validated search, ready to run (see `prepare_search`).

    Args:
        raw: the base experiment as a raw config dict (file and overrides, no [search]).
        spec: the [search] section.
        params: the searched settings.
        model: the model tuned.
        study_name: the study's name.
        folder: the search folder.
        storage: the study's database URL.
        workers: local worker processes.
        threads: torch threads per worker.
    """

    raw: dict[str, Any]
    spec: SearchConfig
    params: list[Param]
    model: str
    study_name: str
    folder: Path
    storage: str
    workers: int
    threads: int


def import_optuna() -> Any:
    """The optuna module; a `ConfigError` saying how to install it when it is missing."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(OPTUNA_MISSING) from None
    return optuna


def set_search_value(raw: dict[str, Any], item: str) -> None:
    """Apply a `--set search.KEY=VALUE` item (e.g. search.n_trials=40) to a raw dict.

    Args:
        raw: the raw search file.
        item: the override.
    """
    from forecast.config import parse_value

    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set expects search.KEY=VALUE (e.g. search.n_trials=40), got {item!r}")
    node = raw.setdefault("search", {})
    for part in parts[1:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is not a table")
    node[parts[-1]] = parse_value(value)


def _flatten(space: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Path -> distribution table; TOML's dotted keys (lstm.hidden_size = {...}) nest."""
    out = {}
    for key, value in space.items():
        path = f"{prefix}.{key}" if prefix else key
        if not isinstance(value, dict):
            raise ConfigError(
                f"[search.space] {path!r} must be a table such as "
                f'{{type = "float", low = 1e-4, high = 1e-2}}, got {value!r}'
            )
        out.update({path: value} if "type" in value else _flatten(value, path))
    return out


def prepare_search(raw: dict[str, Any], source: Path, storage: str | None = None) -> Search:
    """Validate a search (base config, space, pruner, every corner of the space, the data)
    before anything is written.

    Args:
        raw: the search file as a raw dict (with its overrides applied).
        source: the search file (its name is the default study name).
        storage: a database URL that wins over `search.storage`.
    """
    from forecast.config import model_params
    from forecast.data.source import load_source, make_bundle
    from forecast.models.registry import create_model, get_entry
    from forecast.runs import check_run_name

    optuna = import_optuna()
    raw = copy.deepcopy(raw)
    section = raw.pop("search", None)
    if not isinstance(section, dict):
        raise ConfigError(f"{source} has no [search] section (see forecast/search.py)")
    spec = SearchConfig(**typed_fields(SearchConfig, section, "[search]"))
    cfg = config_from_dict(raw)
    if spec.n_trials < 1:
        raise ConfigError(f"search.n_trials must be at least 1, got {spec.n_trials}")
    for key, value, allowed in (
        ("direction", spec.direction, ("minimize", "maximize")),
        ("sampler", spec.sampler, tuple(SAMPLERS)),
        ("pruner.type", spec.pruner.get("type"), tuple(PRUNERS)),
    ):
        if value not in allowed:
            raise ConfigError(f"search.{key} must be one of {list(allowed)}, got {value!r}")
    model = spec.model or _neural_model(cfg.models)
    if get_entry(model).kind != "neural":
        raise ConfigError(f"search.model {model!r} is a baseline: a search tunes a neural model")
    if model not in cfg.models and not {"all", "neural"} & set(cfg.models):
        raise ConfigError(f"search.model {model!r} is not among models = {cfg.models}")
    params = [
        Param(**typed_fields(Param, {**table, "path": path}, f"[search.space] {path!r}"))
        for path, table in _flatten(spec.space).items()
    ]
    if not params:
        raise ConfigError("[search.space] is empty: name at least one setting to search")
    if len(spec.enqueue) > spec.n_trials:
        raise ConfigError(f"search.enqueue holds {len(spec.enqueue)} trials, more than n_trials")
    paths = {p.path for p in params}
    for values in spec.enqueue:
        if set(values) - paths:
            raise ConfigError(
                f"search.enqueue: {sorted(set(values) - paths)} not in [search.space]"
            )
        config_from_dict(with_values(raw, values))
    df, roles, split, _ = load_source(cfg.data)
    bundle = make_bundle(cfg, df, roles, split)
    if bundle.val is None or not len(bundle.val):
        raise ConfigError("a search scores validation windows: the data split has none")
    for p in params:  # every corner builds (values within the model's ranges)
        for value in p.corners():
            corner = config_from_dict(with_values(raw, {p.path: value}))
            if not p.path.startswith("data."):  # the base data's layout
                try:
                    create_model(model, bundle.layout, **model_params(corner, model, 0))
                except (ValueError, TypeError) as err:
                    raise ConfigError(f"[search.space] {p.path!r} = {value!r}: {err}") from None
    name = check_run_name(spec.study_name or source.stem)
    folder = Path(cfg.run.output_dir) / name
    url = storage or spec.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    make_pruner(optuna, spec)  # its arguments, checked
    return Search(
        raw=raw,
        spec=spec,
        params=params,
        model=model,
        study_name=name,
        folder=folder,
        storage=url,
        workers=cfg.run.workers,
        threads=fixed_count(cfg.run.threads),
    )


def _neural_model(models: list[str]) -> str:
    """The one neural model named in `models` (the default `search.model`)."""
    from forecast.models.registry import get_entry, list_models

    names = [m for m in models if m in list_models() and get_entry(m).kind == "neural"]
    if len(names) != 1:
        raise ConfigError(f"models = {models}: set search.model to the neural model to tune")
    return names[0]


def make_pruner(optuna: Any, spec: SearchConfig) -> Any:
    """The pruner of `spec.pruner`; a `ConfigError` for arguments it does not take.

    Args:
        optuna: the optuna module.
        spec: the search section.
    """
    kwargs = {k: v for k, v in spec.pruner.items() if k != "type"}
    cls = getattr(optuna.pruners, PRUNERS[spec.pruner["type"]])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[search.pruner] type {spec.pruner['type']!r}: {err}") from None


# ---------------------------------------------------------------------------- running
def run_search(search: Search) -> Path:
    """Create or continue the study, run trials until it holds `n_trials` finished ones
    (in `search.workers` processes), then write the search folder's outputs.

    Returns the search folder.

    Args:
        search: a validated search (`prepare_search`).
    """
    from forecast.search_report import write_search_outputs

    optuna = import_optuna()
    made = _open_folder(search)
    try:
        study = optuna.create_study(
            study_name=search.study_name,
            storage=_storage(optuna, search.storage),
            direction=search.spec.direction,
            load_if_exists=True,
        )
    except ConfigError:
        if made:  # nothing left behind for a search that never started
            import shutil

            shutil.rmtree(search.folder, ignore_errors=True)
        raise
    for values in search.spec.enqueue:
        study.enqueue_trial(values, skip_if_exists=True)
    log.info(
        "study %r in %s: %d trials so far", search.study_name, search.storage, len(study.trials)
    )
    if search.workers == 1:
        work(search, 0)
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch state
        with cf.ProcessPoolExecutor(search.workers, ctx) as pool:
            for fut in [pool.submit(work, search, i) for i in range(search.workers)]:
                fut.result()
    study = optuna.load_study(
        study_name=search.study_name, storage=_storage(optuna, search.storage)
    )
    write_search_outputs(search, study)
    return search.folder


def _open_folder(search: Search) -> bool:
    """Make the search folder with `search.json`, or check that an existing one holds this
    search (only n_trials and storage may differ). True when it was made now."""
    from forecast.io import read_json
    from forecast.runner import same_config
    from forecast.runs import RunFolder

    stored = {
        "search": {k: v for k, v in asdict(search.spec).items() if k not in UNCHECKED},
        "model": search.model,
        "config": config_to_dict(config_from_dict(search.raw)),
    }
    path = search.folder / "search.json"
    if search.folder.exists():
        if not path.is_file():
            raise ConfigError(
                f"{search.folder} exists and is not a search folder (no search.json); "
                "choose another search.study_name or run.output_dir"
            )
        before = read_json(path)
        same = (
            before.get("search") == json.loads(json.dumps(stored["search"]))
            and before.get("model") == stored["model"]
        )
        if not same or not same_config(before["config"], stored["config"]):
            raise ConfigError(
                f"{path} holds a different search than the one given; continue it with the "
                "same file (only search.n_trials and the storage may change), or choose "
                "another search.study_name"
            )
        return False
    folder = RunFolder(search.folder.parent, search.folder.name)
    folder.write_json("search.json", stored)
    return True


def _storage(optuna: Any, url: str) -> Any:
    """The study's RDB storage; one `ConfigError` line for a URL it cannot open."""
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # sqlalchemy and driver errors have no common base here
        raise ConfigError(f"storage {url!r} cannot be opened: {err}") from None


@contextlib.contextmanager
def _slot_lock(url: str) -> Iterator[None]:
    """Serialises claiming trials among the processes of this machine (a lock file beside
    a SQLite study); a no-op for server databases."""
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(url[len("sqlite:///") :] + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive_elsewhere(trial: Any) -> bool:
    """Whether a RUNNING trial may still be running: False when its worker was a process
    of this machine that is gone (e.g. killed)."""
    if trial.user_attrs.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(trial.user_attrs.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _claim(optuna: Any, study: Any, n_trials: int) -> Any | None:
    """The next trial for this worker (an enqueued one first), or None when the study
    holds `n_trials` finished, running or queued trials. Trials left RUNNING by a dead
    worker of this machine are marked failed first (they are not counted)."""
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if not _alive_elsewhere(t):
            log.warning("trial %d was left running by a dead worker: marked failed", t.number)
            study.tell(t.number, state=state.FAIL, skip_if_finished=True)
    counts = Counter(t.state for t in study.get_trials(deepcopy=False))
    if not counts[state.WAITING]:
        taken = counts[state.COMPLETE] + counts[state.PRUNED] + counts[state.RUNNING]
        if taken >= n_trials:
            return None
    trial = study.ask()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    return trial


def work(search: Search, index: int) -> int:
    """One worker: claim and run trials until the study is full. Returns trials run.

    Args:
        search: the search.
        index: the worker's number (seeds its sampler).
    """
    import torch

    optuna = import_optuna()
    threads = torch.get_num_threads()
    torch.set_num_threads(search.threads)
    storage = _storage(optuna, search.storage)
    spec = search.spec
    so_far = len(optuna.load_study(study_name=search.study_name, storage=storage).trials)
    seed = spec.seed + 1000 * index + so_far  # a new stream per worker and continuation
    sampler = getattr(optuna.samplers, SAMPLERS[spec.sampler])(seed=seed)
    study = optuna.load_study(
        study_name=search.study_name,
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(optuna, spec),
    )
    objective, ran = Objective(search), 0
    try:
        while True:
            with _slot_lock(search.storage):
                trial = _claim(optuna, study, spec.n_trials)
            if trial is None:
                return ran
            _run_trial(optuna, study, trial, objective)
            ran += 1
    finally:
        torch.set_num_threads(threads)


def _run_trial(optuna: Any, study: Any, trial: Any, objective: Objective) -> None:
    state = optuna.trial.TrialState
    try:
        value = objective(trial)
    except optuna.TrialPruned as why:
        trial.set_user_attr("pruned", str(why))
        study.tell(trial, state=state.PRUNED)
        log.info("trial %d pruned: %s", trial.number, why)
        return
    except BaseException:
        study.tell(trial, state=state.FAIL)
        raise
    study.tell(trial, value)
    log.info("trial %d: validation loss %.6g with %s", trial.number, value, trial.params)


class Objective:
    """A trial's validation loss: the searched model fitted with the trial's values.

    The data of a config is loaded once per worker process and kept.

    Args:
        search: the search.
    """

    def __init__(self, search: Search) -> None:
        self.search = search
        self._bundles: dict[str, Any] = {}

    def __call__(self, trial: Any) -> float:
        """Fit and score one trial; raises `optuna.TrialPruned` when pruned or diverged."""
        import time

        optuna = import_optuna()
        values = {p.path: p.suggest(trial) for p in self.search.params}
        raw = with_values(self.search.raw, values)
        raw.setdefault("run", {})["progress"] = False
        model, bundle = self.build(config_from_dict(raw))

        def on_epoch_end(epoch: int, val_loss: float) -> None:
            if val_loss == val_loss:  # not NaN
                trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"after epoch {epoch}, validation loss {val_loss:.6g}")

        model.epoch_callbacks.append(on_epoch_end)
        start = time.perf_counter()
        try:
            model.fit(bundle.train, bundle.val)
        except FloatingPointError as err:  # diverged: a bad region of the space
            raise optuna.TrialPruned(str(err)) from None
        trial.set_user_attr("fit_seconds", time.perf_counter() - start)
        trial.set_user_attr("epochs_run", len(model.history_))
        trial.set_user_attr("best_epoch", model.best_epoch_)
        return validation_loss(model, bundle.val)

    def build(self, cfg: Any) -> tuple[Any, Any]:
        """The unfitted model of a trial's config and its data."""
        from forecast.config import model_params
        from forecast.data.source import load_source, make_bundle
        from forecast.models.registry import create_model

        plain = config_to_dict(cfg)
        key = json.dumps([plain["data"], plain["evaluation"]], sort_keys=True, default=str)
        if key not in self._bundles:
            df, roles, split, _ = load_source(cfg.data)
            self._bundles = {key: make_bundle(cfg, df, roles, split)}  # one data set kept
        bundle = self._bundles[key]
        name = self.search.model
        model = create_model(name, bundle.layout, **model_params(cfg, name, cfg.run.seeds[0]))
        return model, bundle


def validation_loss(model: Any, val: Any) -> float:
    """The validation loss the training loop saw for the weights it kept: `evaluate_loss`
    on the same evenly spread `max_val_windows` validation windows.

    Args:
        model: a fitted torch forecaster.
        val: the validation windows.
    """
    from forecast.training import even_subset

    return model.evaluate_loss(even_subset(val, model.config.train.max_val_windows))
