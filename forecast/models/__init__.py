"""Models: baselines and attention networks behind one `Forecaster` interface.

Importing the package registers the built-in models (their modules' `@register_model`
decorators run here), so `forecast.models.registry` lookups always see them.
"""

from forecast.models import (  # noqa: F401  (registers the built-in models)
    baselines,
    dlinear,
    lstm,
    pretrain,
    segment,
    transformer,
)
from forecast.models.base import Forecaster, ForecastOutput, ModelConfig
from forecast.models.registry import create_model, list_models, register_model

__all__ = [
    "ForecastOutput",
    "Forecaster",
    "ModelConfig",
    "create_model",
    "list_models",
    "register_model",
]
