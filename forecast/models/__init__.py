"""Models: baselines and attention networks behind one `Forecaster` interface."""

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
