"""Checks of experiment configs: value types against dataclass annotations, ranges and
choices, and every model's hyper-parameters (by building the model's own Config).

Every failure raises `ConfigError` (a `ValueError`) naming the key, its section and what
was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forecast.config import ExperimentConfig

MODEL_GROUPS = ("all", "baselines", "neural")
SPLITS = ("fractions", "ett_hour", "ett_minute")
SCALINGS = ("per_series", "global", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
DM_PREDICTIONS = ("first_seed", "seed_mean")
PREDICTION_FILES = ("npz", "csv", "none")
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
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in section {where}; valid keys: {sorted(valid)}"
        )
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
    _one_of("run.predictions", r.predictions, PREDICTION_FILES)
    _positive("run.workers", r.workers)
    if r.threads is not None:
        _positive("run.threads", r.threads)
    _one_of("evaluation.dm_predictions", e.dm_predictions, DM_PREDICTIONS)
    if b.folds < 0 or b.folds == 1:
        raise ConfigError(f"backtest.folds must be 0 (off) or at least 2, got {b.folds}")
    for key in ("max_windows", "n_repeats", "ig_steps", "ig_windows"):
        _positive(f"interpret.{key}", getattr(cfg.interpret, key))
    validate_models(cfg)


def model_names(cfg: ExperimentConfig) -> list[str]:
    """The models a config runs: groups expanded, every baseline added, no duplicates.

    Args:
        cfg: the config.
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
    return list(dict.fromkeys([*names, *list_models("baseline")]))


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
    fields = {f.name for f in dataclasses.fields(entry.cls.Config)}
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
            entry.cls.Config(**{**entry.defaults, **params})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None


def _train_config_class() -> type | None:
    try:
        from forecast.training import TrainConfig
    except ImportError:
        return None
    return TrainConfig
