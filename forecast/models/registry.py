"""One registry of models by name: `create_model(name, layout, **params)`.

Model modules register themselves with the `register_model` decorator; the package
`forecast.models` imports the built-in ones, so every lookup here sees them. This module
imports no model module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forecast.data.windows import WindowLayout
from forecast.models.base import Forecaster
from forecast.params import param_names


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its class, default parameters and kind."""

    name: str
    cls: type[Forecaster]
    kind: str  # "baseline" or "neural"
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    kind: str = "baseline",
    defaults: dict[str, Any] | None = None,
    description: str = "",
) -> Callable[[type[Forecaster]], type[Forecaster]]:
    """Class decorator adding a model under `name` (stack it to add presets).

    Args:
        name: registry key, lower case.
        kind: 'baseline' or 'neural'.
        defaults: parameter values this entry sets on top of the class's Config defaults.
        description: one line for `--list-models`.
    """

    def add(cls: type[Forecaster]) -> type[Forecaster]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        doc = description or (cls.__doc__ or "").strip().splitlines()[0]
        _MODELS[name] = ModelEntry(name, cls, kind, dict(defaults or {}), doc)
        return cls

    return add


def get_entry(name: str) -> ModelEntry:
    """The registry entry of `name`; unknown names raise a ValueError listing known ones.

    Args:
        name: registry key.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(_MODELS)}")
    return _MODELS[name]


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names, optionally only 'baseline' or 'neural' ones.

    Args:
        kind: 'baseline', 'neural' or None for all.
    """
    return sorted(n for n, e in _MODELS.items() if kind is None or e.kind == kind)


def create_model(name: str, layout: WindowLayout, **params: Any) -> Forecaster:
    """Build a registered model for windows shaped like `layout`.

    Args:
        name: registry key (see `list_models()`).
        layout: input length, horizon and column roles of the data.
        **params: hyper-parameters; unknown ones raise a ValueError naming them.
    """
    entry = get_entry(name)
    valid = set(param_names(entry.cls.Config))
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for model {name!r}; valid: {sorted(valid)}"
        )
    config = entry.cls.Config.from_params(**{**entry.defaults, **params})
    model = entry.cls(layout, config)
    model.name = name
    return model
