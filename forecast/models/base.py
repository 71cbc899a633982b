"""The one interface every model sits behind: baselines and torch networks alike."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from torch import Tensor

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.params import config_groups, split_params

EVAL_MEMORY_BYTES = 1 << 30
"""Budget for one evaluation batch's activations (see `Forecaster.max_batch`)."""


@dataclass(frozen=True)
class ForecastOutput:
    """What every model returns for a batch; attention always comes back as data.

    Args:
        prediction: [B, H, targets] in the scaled space.
        temporal_attention: [B, H, L] decoder step x encoder step, rows sum to 1.
        feature_attention: [B, L, F] per input step, per encoder feature, rows sum to 1.
        extras: model-specific maps (e.g. transformer attention per layer and head).
        quantiles: [B, H, targets, Q] at the model's `config.quantiles` levels (ascending,
            the 0.5 level equal to `prediction`); None for a point forecast.
    """

    prediction: Tensor
    temporal_attention: Tensor | None = None
    feature_attention: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    quantiles: Tensor | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model's config dataclass (hyper-parameters only, no data).

    A config may compose others (a torch model's `train: TrainConfig`); `from_params`
    builds it from one flat set of keys and `params()` returns that flat set.
    """

    @classmethod
    def from_params(cls, **params: Any) -> Self:
        """The config from flat keys (see `split_params`): a nested config starts from
        this class's default for it, so a model's own training defaults are kept.

        Args:
            **params: flat key -> value; an unknown key raises a ValueError naming it.
        """
        own, nested = split_params(cls, params)
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        for group, values in nested.items():
            f = defaults[group]
            if f.default_factory is not dataclasses.MISSING:
                base = f.default_factory()
            elif f.default is not dataclasses.MISSING:
                base = f.default
            else:
                base = config_groups(cls)[group]()
            own[group] = dataclasses.replace(base, **values)
        return cls(**own)

    def params(self) -> dict[str, Any]:
        """The flat keys and values that `from_params` rebuilds this config from."""
        out: dict[str, Any] = {}
        groups = config_groups(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in groups:
                out.update(dataclasses.asdict(value))
            else:
                out[f.name] = value
        return out


class Forecaster(ABC):
    """`fit(train, val)` then `predict_batch(batch)`; everything in the scaled space.

    Subclasses declare `Config` (a frozen dataclass of hyper-parameters) and are built by
    `forecast.models.create_model(name, layout, **params)`.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    name: str = "forecaster"

    def __init__(self, layout: WindowLayout, config: ModelConfig | None = None) -> None:
        self.layout = layout
        self.config = config if config is not None else self.Config()

    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> Forecaster:
        """Learn from training windows (baselines that learn nothing return self)."""
        return self

    @abstractmethod
    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        """Forecast a batch of windows; must only read the past and known-future fields.

        Args:
            batch: the windows.
            attention: return the attention maps (always available on request); False
                lets a model whose maps are large (the transformer) skip computing them.
                Models without attention ignore it.
        """

    def state_dict(self) -> dict[str, Tensor]:
        """What `fit` learned, as tensors, for checkpoints (`forecast.checkpoint`); empty
        for a rule that learns nothing. Torch models keep their weights in `network`."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what `state_dict` returned.

        Args:
            state: the tensors `state_dict` returned.
        """
        if state:
            raise ValueError(f"{type(self).__name__} learns nothing, got state {sorted(state)}")

    def max_batch(self, attention: bool) -> int | None:
        """The most windows per `predict_batch` call that keep its activations within
        `EVAL_MEMORY_BYTES`; None: no limit (small models).

        Args:
            attention: whether the maps are asked for.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
