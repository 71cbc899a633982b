"""Parameters of configs, without torch: choice checks and the flat keys of composed
configs (a torch model's config holds its training settings in a nested `train`
config; users pass both kinds of keys in one flat set)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def check_choices(*options: tuple[str, object, tuple]) -> None:
    """Raise a clear ValueError for the first (name, value, allowed) whose value is not
    one of `allowed`.

    >>> check_choices(("optimizer", "adam", ("adam", "adamw")))
    >>> check_choices(("optimizer", "sgd", ("adam", "adamw")))
    Traceback (most recent call last):
    ...
    ValueError: unknown optimizer 'sgd'; expected one of ['adam', 'adamw']

    Args:
        options: (option name, its value, the allowed values) triples.
    """
    for name, value, allowed in options:
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")


def config_groups(config_cls: type) -> dict[str, type]:
    """The fields of a config dataclass that hold a nested config dataclass (a torch
    model's `train`), by name: their keys are passed flat (see `split_params`).

    Args:
        config_cls: a config dataclass.
    """
    hints = typing.get_type_hints(config_cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(config_cls)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    }


def split_params(
    config_cls: type, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split one flat set of keys into a config's own fields and those of its nested
    configs: `(own, {group field: its keys})`. Users pass one flat set (TOML sections,
    `create_model(name, layout, **params)`); the architecture and training settings are
    kept apart in the config itself.

    >>> from forecast.models.lstm import LSTMConfig
    >>> split_params(LSTMConfig, {"hidden_size": 8, "epochs": 2})
    ({'hidden_size': 8}, {'train': {'epochs': 2}})

    Args:
        config_cls: a config dataclass (e.g. `LSTMConfig`).
        params: flat key -> value.

    Raises:
        ValueError: naming the first unknown key and listing the valid ones.
    """
    groups = config_groups(config_cls)
    own_names = {f.name for f in dataclasses.fields(config_cls)} - set(groups)
    owner = {name: None for name in own_names}
    for group, cls in groups.items():
        for f in dataclasses.fields(cls):
            if f.name in owner:  # a design error of the config class, not of the input
                raise TypeError(f"{config_cls.__name__}: key {f.name!r} is in two groups")
            owner[f.name] = group
    own: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {group: {} for group in groups}
    for key, value in params.items():
        if key not in owner:
            raise ValueError(
                f"unknown parameter {key!r} for {config_cls.__name__}; valid: {sorted(owner)}"
            )
        group = owner[key]
        (own if group is None else nested[group])[key] = value
    return own, nested


def param_names(config_cls: type) -> list[str]:
    """Every flat key a config accepts (its own fields and its nested configs' ones).

    Args:
        config_cls: a config dataclass.
    """
    groups = config_groups(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls) if f.name not in groups]
    return names + [f.name for cls in groups.values() for f in dataclasses.fields(cls)]
