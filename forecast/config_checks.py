"""Checks of experiment configs: value types against dataclass annotations, ranges and
choices, and every model's hyper-parameters (by building the model's own Config).

Every failure raises `ConfigError` (a `ValueError`) naming the key, its section and what
was expected.
"""

from __future__ import annotations

import logging
import types
import typing
from typing import TYPE_CHECKING, Any

from forecast.params import config_groups, param_names

if TYPE_CHECKING:
    from forecast.config import ExperimentConfig
    from forecast.data.windows import WindowLayout

log = logging.getLogger(__name__)

SYNTHETIC = ("synthetic", "synthetic_lagged")
"""The embedded datasets with a known ground truth."""

COVERAGE_LEVELS = (0.5, 0.8, 0.9)
"""Default `run.interval_levels`: the calibrated intervals every model is scored on."""

MODEL_GROUPS = ("all", "baselines", "neural")
SPLITS = ("fractions", "borders", "timestamps", "ett_hour", "ett_minute")
SCALINGS = ("per_series", "global", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
DM_PREDICTIONS = ("first_seed", "seed_mean")
PREDICTION_FILES = ("npz", "csv", "none")
EXECUTORS = ("local", "ray")
RUN_WIDE = ("seed", "device", "progress")  # set per run, never per model


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and what was expected."""


# ------------------------------------------------------------------------- types
def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_type(value: Any, tp: Any) -> bool:
    """Whether `value` fits the annotation `tp` (int for float is fine, bool for int not).

    Args:
        value: a parsed config value.
        tp: a resolved type annotation (from `typing.get_type_hints`).
    """
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(check_type, value, args))
        return not args or all(check_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _convert(value: Any, tp: Any) -> Any:
    """Lists from TOML become tuples where the field is a tuple; ints become floats."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        return tuple(_convert(v, a) for v, a in zip(value, typing.get_args(tp)))
    return value


def typed_fields(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check keys and value types of `values` against dataclass `cls`.

    Args:
        cls: the dataclass the values are for.
        values: key -> value, as parsed.
        where: the section name used in error messages (e.g. '[data]', '[model.lstm]').
    """
    groups = config_groups(cls)  # nested configs (a torch model's `train`) take flat keys
    valid = param_names(cls)
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in section {where}; valid keys: {sorted(valid)}"
        )
    hints = {k: v for c in (cls, *groups.values()) for k, v in typing.get_type_hints(c).items()}
    out = {}
    for key, value in values.items():
        if not check_type(value, hints[key]):
            raise ConfigError(
                f"{where} {key} must be of type {_type_name(hints[key])}, "
                f"got {type(value).__name__} {value!r}"
            )
        out[key] = _convert(value, hints[key])
    return out


# -------------------------------------------------------------------- validation
def check_interval_levels(levels: list[float]) -> None:
    """`run.interval_levels`: at least one, none repeated, each strictly between 0 and 1.

    Args:
        levels: the coverage levels.
    """
    if not levels:
        raise ConfigError("run.interval_levels must name at least one coverage level, got []")
    bad = [x for x in levels if not 0.0 < x < 1.0]
    if bad:
        raise ConfigError(
            f"run.interval_levels must each lie in (0, 1) (e.g. 0.8 for 80 %), got {bad[0]!r} "
            f"in {list(levels)}"
        )
    if len({round(x, 6) for x in levels}) != len(levels):
        raise ConfigError(f"run.interval_levels must not repeat a level, got {list(levels)}")


def _positive(where: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{where} must be positive, got {value}")


def _one_of(where: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}")


def validate(cfg: ExperimentConfig) -> None:
    """Check ranges, choices and every model's hyper-parameters; raise `ConfigError`.

    Args:
        cfg: the config to check (left unchanged).
    """
    d, r, e, b = cfg.data, cfg.run, cfg.evaluation, cfg.backtest
    _positive("data.input_length", d.input_length)
    _positive("data.horizon", d.horizon)
    _positive("evaluation.stride", e.stride)
    _positive("data.synthetic_rows", d.synthetic_rows)
    if d.split is not None:
        _one_of("data.split", d.split, SPLITS)
    validate_data_options(d)
    _one_of("data.scaling", d.scaling, SCALINGS)
    if isinstance(d.covariates, str):
        _one_of("data.covariates", d.covariates, ("all", "none"))
    if not isinstance(d.calendar, bool):
        from forecast.data.calendar import check_calendar

        try:
            check_calendar(d.calendar)
        except ValueError as err:
            raise ConfigError(f"data.calendar: {err}") from None
    fr = d.fractions
    if any(f < 0 for f in fr) or fr[0] == 0 or sum(fr) > 1 + 1e-9:
        raise ConfigError(
            f"data.fractions must be three non-negative numbers, train > 0, summing to at "
            f"most 1; got {list(fr)}"
        )
    if d.dataset == "csv" and not d.data_path:
        raise ConfigError("data.dataset 'csv' needs data.data_path (--data-path) naming the CSV")
    if d.dataset == "csv" and not d.targets:
        raise ConfigError("data.dataset 'csv' needs data.targets (--targets) naming the column(s)")
    if not r.seeds:
        raise ConfigError("run.seeds must name at least one seed, got []")
    if len(set(r.seeds)) != len(r.seeds):
        raise ConfigError(f"run.seeds must not repeat a seed, got {r.seeds}")
    _one_of("run.device", r.device, DEVICES)
    if r.name is not None:
        from forecast.runs import check_run_name

        try:
            check_run_name(r.name)
        except ValueError as err:
            raise ConfigError(f"run.name: {err}") from None
    _one_of("run.predictions", r.predictions, PREDICTION_FILES)
    check_interval_levels(r.interval_levels)
    _positive("run.workers", r.workers)
    _one_of("run.executor", r.executor, EXECUTORS)
    if r.address is not None and r.executor != "ray":
        raise ConfigError(
            f"run.address ({r.address!r}) is the Ray cluster's address: set run.executor = "
            "'ray' too (--executor ray), or drop it"
        )
    if r.threads != "auto" and (isinstance(r.threads, bool) or not isinstance(r.threads, int)):
        raise ConfigError(f"run.threads must be 'auto' or a positive integer, got {r.threads!r}")
    if r.threads != "auto":
        _positive("run.threads", r.threads)
    _one_of("evaluation.dm_predictions", e.dm_predictions, DM_PREDICTIONS)
    if b.folds < 0 or b.folds == 1:
        raise ConfigError(f"backtest.folds must be 0 (off) or at least 2, got {b.folds}")
    for key in ("max_windows", "n_repeats", "ig_steps", "ig_windows"):
        _positive(f"interpret.{key}", getattr(cfg.interpret, key))
    validate_models(cfg)


def validate_data_options(d: Any) -> None:
    """Checks of the data keys added for real files: targets 'all', split borders and
    timestamps, freq, fill, gaps, period.

    Args:
        d: the `DataConfig`.
    """
    from forecast.data.frame import FILL_POLICIES, GAP_POLICIES, STEP

    if isinstance(d.targets, str) and d.targets != "all":
        raise ConfigError(f"data.targets must be a list of columns or 'all', got {d.targets!r}")
    if d.targets is not None and not d.targets:
        raise ConfigError("data.targets must name at least one column (or 'all'), got []")
    if d.split == "borders":
        b = d.borders or []
        if len(b) not in (2, 3) or b[0] <= 0 or any(x > y for x, y in zip(b, b[1:])):
            raise ConfigError(
                "data.split 'borders' needs data.borders (--borders) = 2 or 3 increasing row "
                f"indices TRAIN_END VAL_END [TEST_END], train_end > 0; got {d.borders}"
            )
    elif d.borders is not None:
        raise ConfigError(
            f"data.borders {d.borders} is only used with data.split = 'borders' (--split borders)"
        )
    if d.split == "timestamps":
        if d.split_at is None or len(d.split_at) not in (2, 3):
            raise ConfigError(
                "data.split 'timestamps' needs data.split_at (--split-at) = VAL_START "
                f"TEST_START [TEST_END]; got {d.split_at}"
            )
        if not all(isinstance(t, int) for t in d.split_at):
            import pandas as pd

            try:
                pd.to_datetime([str(t) for t in d.split_at], format="mixed")
            except (ValueError, TypeError):
                raise ConfigError(
                    f"data.split_at {d.split_at} must be timestamps (e.g. 2020-03-01) or "
                    "integer steps"
                ) from None
    elif d.split_at is not None:
        raise ConfigError(
            f"data.split_at {d.split_at} is only used with data.split = 'timestamps' "
            "(--split timestamps)"
        )
    if d.fill is not None:
        _one_of("data.fill", d.fill, FILL_POLICIES)
    if d.gaps is not None:
        _one_of("data.gaps", d.gaps, GAP_POLICIES)
        if d.gaps == "fill" and d.fill is None:
            raise ConfigError(
                f"data.gaps 'fill' needs data.fill (--fill) one of {list(FILL_POLICIES)}"
            )
    if d.freq is not None and d.freq != STEP:
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(d.freq)
        except (ValueError, TypeError):
            raise ConfigError(
                f"data.freq {d.freq!r} is not a pandas frequency alias (e.g. 'h', '15min', 'D')"
            ) from None
    if d.period is not None:
        _positive("data.period", d.period)


def model_names(
    cfg: ExperimentConfig, layout: WindowLayout | None = None, *, warn: bool = False
) -> list[str]:
    """The models a config runs: groups expanded, every baseline added, no duplicates.

    A seasonal baseline that cannot run (`seasonal_naive` with `input_length` below its
    period, see `seasonal_naive_conflict`) is a `ConfigError` when the config names it in
    `models` or sets its period; when it only came in with the baselines (or a group) it is
    left out.

    Args:
        cfg: the config.
        layout: the prepared data's layout (its seasonal period); None judges from the
            config alone, which knows the period of the embedded and registered datasets
            but not of a CSV.
        warn: log a warning for a baseline left out (once per run, not per check).
    """
    from forecast.models.registry import get_entry, list_models

    names: list[str] = []
    for name in cfg.models:
        if name == "all":
            names += list_models()
        elif name == "baselines":
            names += list_models("baseline")
        elif name == "neural":
            names += list_models("neural")
        else:
            try:
                get_entry(name)
            except ValueError as err:
                raise ConfigError(f"models: {err}; or a group in {list(MODEL_GROUPS)}") from None
            names.append(name)
    names = list(dict.fromkeys([*names, *list_models("baseline")]))
    problem = seasonal_naive_conflict(cfg, layout) if "seasonal_naive" in names else None
    if problem is not None:
        explicit = "seasonal_naive" in cfg.models or "period" in cfg.model.get("seasonal_naive", {})
        if explicit:
            raise ConfigError(
                f"{problem}; raise data.input_length (--input-length), set a shorter "
                "[model.seasonal_naive] period, or drop seasonal_naive from models"
            )
        if warn:
            log.warning("seasonal_naive left out of this run: %s", problem)
        names.remove("seasonal_naive")
    return names


def _config_period(cfg: ExperimentConfig) -> tuple[int, str] | None:
    """(seasonal period, frequency) of the data a config names, without reading it; None
    for a CSV, whose frequency is known only once it is loaded."""
    from forecast.data.calendar import seasonal_period

    if cfg.data.dataset in SYNTHETIC:
        import inspect

        from forecast.data import synthetic

        make = (
            synthetic.make_driver_dataset
            if cfg.data.dataset == "synthetic"
            else synthetic.make_lagged_driver_dataset
        )  # as `forecast.data.source.load_source` calls it: the default frequency
        freq = inspect.signature(make).parameters["freq"].default
    elif cfg.data.dataset == "csv":
        return None
    else:
        from forecast.data.registry import get_dataset_spec

        try:
            freq = get_dataset_spec(cfg.data.dataset).freq
        except ValueError:  # an unknown dataset is reported when it is loaded
            return None
    return seasonal_period(freq), freq


def seasonal_naive_conflict(
    cfg: ExperimentConfig, layout: WindowLayout | None = None
) -> str | None:
    """Why `seasonal_naive` cannot run with this config, or None when it can (or when the
    period is not known yet).

    It repeats the last season of the input window, so it needs `input_length` >= its
    period: `[model.seasonal_naive] period` if set, else the data's (a day of rows for
    sub-daily data, e.g. 96 for 15-minute data).

    Args:
        cfg: the config.
        layout: the prepared data's layout; None judges from the config alone.
    """
    length = cfg.data.input_length
    period = cfg.model.get("seasonal_naive", {}).get("period")
    if isinstance(period, int) and not isinstance(period, bool) and period > 0:
        where = "[model.seasonal_naive] period"
    elif cfg.data.period is not None:
        period, where = cfg.data.period, "data.period (--period)"
    else:
        known = (layout.period, layout.freq) if layout is not None else _config_period(cfg)
        if known is None:
            return None
        period, where = known[0], f"one season of the data's {known[1]!r} rows"
    if length >= period:
        return None
    return (
        f"model 'seasonal_naive' needs data.input_length >= its period, got input_length "
        f"{length} < period {period} ({where})"
    )


def model_params(cfg: ExperimentConfig, name: str, seed: int) -> dict[str, Any]:
    """Parameters of one model: run-wide seed/device/progress (where its Config has them),
    `[train]` (neural models only), then `[model.NAME]`.

    Args:
        cfg: the config.
        name: a registered model name.
        seed: the seed of this fit.
    """
    from forecast.models.registry import get_entry

    entry = get_entry(name)
    fields = set(param_names(entry.cls.Config))
    run_wide = {"seed": seed, "device": cfg.run.device, "progress": cfg.run.progress}
    shared = {**run_wide, **(cfg.train if entry.kind == "neural" else {})}
    return {**{k: v for k, v in shared.items() if k in fields}, **cfg.model.get(name, {})}


def validate_models(cfg: ExperimentConfig) -> None:
    """Build every model's Config (type and range checks) without any data.

    Args:
        cfg: the config.
    """
    from forecast.models.registry import get_entry, list_models

    names = model_names(cfg)
    registered = set(list_models())
    unknown = sorted(set(cfg.model) - registered)
    if unknown:
        raise ConfigError(
            f"[model.{unknown[0]}] names no registered model; registered: {sorted(registered)}"
        )
    # Tables of registered models left out of this run (e.g. by --models) are checked too.
    for where, values in [
        ("[train]", cfg.train),
        *((f"[model.{n}]", v) for n, v in cfg.model.items()),
    ]:
        fixed = sorted(set(values) & set(RUN_WIDE))
        if fixed:
            raise ConfigError(
                f"{where} sets {fixed}, which are run-wide: use run.seeds, run.device and "
                "run.progress (--no-progress)"
            )
    train_cls = _train_config_class()
    if cfg.train:
        if train_cls is None:
            raise ConfigError("[train] needs forecast.training (neural models), which is missing")
        typed_fields(train_cls, cfg.train, "[train]")
    for name in dict.fromkeys([*names, *cfg.model]):
        entry = get_entry(name)
        params = model_params(cfg, name, cfg.run.seeds[0])
        if name in cfg.model:
            where = f"[model.{name}]"
        else:
            where = (
                f"[train] for model {name!r}"
                if entry.kind == "neural" and cfg.train
                else f"model {name!r}"
            )
        typed_fields(entry.cls.Config, params, where)
        try:
            entry.cls.Config.from_params(**{**entry.defaults, **params})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None


def _train_config_class() -> type | None:
    try:
        from forecast.training import TrainConfig
    except ImportError:
        return None
    return TrainConfig
